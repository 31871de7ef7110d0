"""KryptoBot ML core library: market data, features, labels, evaluation, model store.

Nothing in this package imports a web framework or TensorFlow at import time; the
TensorFlow models import it lazily inside the functions that need it.
"""
__version__ = "0.1.0"
