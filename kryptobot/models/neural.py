"""TensorFlow helpers shared by the anomaly and forecast models.

TensorFlow is imported only inside these functions, never when ``kryptobot`` is
imported, so the services without it (signal, ensemble, trader) never load it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

_TF = None


def tf():
    """Import TensorFlow once, quietly, with a small thread pool (2-core machines)."""
    global _TF
    if _TF is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow

        threads = int(os.environ.get("KRYPTOBOT_TF_THREADS", "2"))
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


class CompiledModel:
    """A Keras model behind one ``tf.function`` with a fixed input signature.

    ``model.predict`` costs ~90 ms per call here; the traced function ~2-3 ms. The
    signature has a free batch dimension, so any batch size reuses the same graph.
    """

    def __init__(self, model, input_shape: tuple[int, ...]):
        t = tf()
        self.model = model
        self.input_shape = tuple(input_shape)
        self._fn = t.function(
            lambda x: model(x, training=False),
            input_signature=[t.TensorSpec([None, *self.input_shape], t.float32)],
            reduce_retracing=True,
        )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._fn(np.asarray(x, dtype=np.float32)).numpy()

    def warmup(self, batches: tuple[int, ...] = (1, 8)) -> None:
        for n in batches:
            self(np.zeros((n, *self.input_shape), dtype=np.float32))

    @classmethod
    def load(cls, path: Path, input_shape: tuple[int, ...]) -> "CompiledModel":
        model = tf().keras.models.load_model(path, compile=False)
        return cls(model, input_shape)
