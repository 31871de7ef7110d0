"""The forecaster's serving call: one XLA-compiled ``tf.function``, batches padded to fixed sizes.

Like :class:`kryptobot.models.neural.CompiledModel`, but with ``jit_compile=True``: a
recurrent network's time loop runs as a ``while`` op whose per-step overhead dominates a
one-window call (~4-5 ms for 60 steps of a small LSTM/GRU here); XLA fuses the loop
body and brings the call under 1 ms. XLA compiles once per distinct batch shape, so
batches are zero-padded to a power of two and cut into chunks of at most
:data:`MAX_BUCKET`: at most ``log2(MAX_BUCKET) + 1`` compilations ever, the small ones
done by ``warmup``. Rows are independent at inference (batch normalisation uses its
moving averages), so padding cannot change a real row's output.
"""
from __future__ import annotations

import numpy as np

from kryptobot.models import neural

MAX_BUCKET = 256
WARM_BUCKETS = (1, 2, 4, 8)


def bucket(n: int) -> int:
    """The smallest power of two >= n (n >= 1)."""
    return 1 << (max(n, 1) - 1).bit_length()


class XlaCompiledModel:
    """``model(x, training=False)`` for ``(n, *input_shape)`` float32 batches, XLA-compiled."""

    def __init__(self, model, input_shape: tuple[int, ...]):
        t = neural.tf()
        self.input_shape = tuple(input_shape)
        self.n_outputs = int(model.outputs[0].shape[-1])
        self._fn = t.function(
            lambda x: model(x, training=False),
            input_signature=[t.TensorSpec([None, *self.input_shape], t.float32)],
            jit_compile=True,
        )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        out = []
        for start in range(0, len(x), MAX_BUCKET):
            chunk = x[start:start + MAX_BUCKET]
            n = len(chunk)
            padded = np.zeros((bucket(n), *self.input_shape), dtype=np.float32)
            padded[:n] = chunk
            out.append(self._fn(padded).numpy()[:n])
        return np.concatenate(out) if out else np.zeros((0, self.n_outputs), dtype=np.float32)

    def warmup(self) -> None:
        """Compile the small batch sizes a request usually has (larger ones compile on first use)."""
        for n in WARM_BUCKETS:
            self(np.zeros((n, *self.input_shape), dtype=np.float32))
