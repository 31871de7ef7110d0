"""TensorFlow helpers shared by the anomaly and forecast models.

TensorFlow is imported only inside these functions, never when ``kryptobot`` is
imported, so the services without it (signal, ensemble, trader) never load it.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

_TF = None


def tf():
    """Import TensorFlow once, quietly, with a small thread pool (2-core machines)."""
    global _TF
    if _TF is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow

        from kryptobot.settings import Settings

        threads = Settings().tf_threads  # TensorFlow's pools are per process: set once, before first use
        try:
            tensorflow.config.threading.set_intra_op_parallelism_threads(threads)
            tensorflow.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass  # already initialised by an earlier import in this process
        _TF = tensorflow
    return _TF


def set_seed(seed: int) -> None:
    tf().keras.utils.set_random_seed(seed)


def progress_callback(report: Callable[..., None], epochs: int, start: float = 0.1, end: float = 0.9):
    """A Keras callback mapping epoch k of n onto job progress ``start..end``."""
    keras = tf().keras

    class _Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            loss = logs.get("loss")
            val = logs.get("val_loss")
            report(
                start + (end - start) * (epoch + 1) / epochs,
                f"epoch {epoch + 1} of {epochs}, loss {loss:.5g}" + (f", val_loss {val:.5g}" if val is not None else ""),
                epoch=epoch + 1,
                epochs=epochs,
                loss=None if loss is None else float(loss),
                val_loss=None if val is None else float(val),
            )

    return _Progress()


MAX_BUCKET = 256
WARM_BUCKETS = (1, 2, 4, 8)


def bucket(n: int) -> int:
    """The smallest power of two >= n (n >= 1)."""
    return 1 << (max(n, 1) - 1).bit_length()


class CompiledModel:
    """``model(x, training=False)`` behind one XLA-compiled ``tf.function``.

    ``model.predict`` costs ~70-90 ms per call here. A plain ``tf.function`` brings that
    to a few ms, but a recurrent network's time loop then runs as a ``while`` op whose
    per-step overhead dominates a one-window call; ``jit_compile=True`` fuses the loop
    body (~0.5 ms for 60 steps of a small LSTM/GRU). XLA compiles once per distinct batch
    shape, so batches are zero-padded to a power of two and cut into chunks of at most
    :data:`MAX_BUCKET`: at most ``log2(MAX_BUCKET) + 1`` compilations ever, the small ones
    done by :meth:`warmup`. Rows are independent at inference (dropout is off, batch
    normalisation uses its moving averages), so padding cannot change a real row.
    """

    def __init__(self, model, input_shape: tuple[int, ...]):
        t = tf()
        self.model = model
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(int(d) for d in model.outputs[0].shape[1:])
        self._fn = t.function(
            lambda x: model(x, training=False),
            input_signature=[t.TensorSpec([None, *self.input_shape], t.float32)],
            jit_compile=True,
        )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        out = []
        for start in range(0, len(x), MAX_BUCKET):
            chunk = x[start : start + MAX_BUCKET]
            n = len(chunk)
            padded = np.zeros((bucket(n), *self.input_shape), dtype=np.float32)
            padded[:n] = chunk
            out.append(self._fn(padded).numpy()[:n])
        return np.concatenate(out) if out else np.zeros((0, *self.output_shape), dtype=np.float32)

    def warmup(self) -> None:
        """Compile the small batch sizes a request usually has (larger ones compile on first use)."""
        for n in WARM_BUCKETS:
            self(np.zeros((n, *self.input_shape), dtype=np.float32))
