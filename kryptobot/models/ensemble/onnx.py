"""ONNX export of the ensemble's base models, each loadable with ``meta.OnnxClassifier``.

RandomForest and GradientBoosting go through skl2onnx as they are. AdaBoost does not:
skl2onnx turns every stump into its own small subgraph (about 5 nodes per estimator,
518 nodes for 100 stumps), which costs ~0.4 ms per row in ONNX Runtime, most of the
ensemble's serving time. A binary SAMME AdaBoost is a plain weighted sum of tree
votes, so it is written here as ONE ``TreeEnsembleRegressor`` and a sigmoid (~0.02 ms):

    decision(x) = sum_i 2 * w_i * s_i(x) / sum(w),  s_i = +1 if stump i predicts class 1 else -1
    P(class 1)  = sigmoid(decision)       (scikit-learn's softmax([-d/2, d/2]) for two classes)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kryptobot.models.common.onnx import OnnxClassifier

OPSETS = {"": 17, "ai.onnx.ml": 3}


def export_base_model(model, n_inputs: int, path: Path) -> None:
    """Write ``model`` (a fitted base model) as ONNX with a ``probabilities`` output."""
    from sklearn.ensemble import AdaBoostClassifier

    if isinstance(model, AdaBoostClassifier):
        Path(path).write_bytes(adaboost_to_onnx(model, n_inputs).SerializeToString())
    else:
        OnnxClassifier.export(model, n_inputs, path)


def _float32_at_most(threshold: float) -> float:
    """The largest float32 <= ``threshold``.

    Trees compare float32 inputs with float64 thresholds; rounding a threshold to the
    nearest float32 could move it above an input that scikit-learn sends left.
    """
    t32 = np.float32(threshold)
    return float(np.nextafter(t32, np.float32(-np.inf)) if float(t32) > threshold else t32)


def adaboost_to_onnx(model, n_inputs: int):
    """A fitted binary AdaBoostClassifier (SAMME) as one tree ensemble + sigmoid."""
    import onnx
    from onnx import TensorProto, helper

    if list(model.classes_) != [0, 1]:
        raise ValueError(f"expected a binary 0/1 classifier, got classes {list(model.classes_)}")
    weights = np.asarray(model.estimator_weights_[: len(model.estimators_)], dtype=np.float64)
    scale = 2.0 / float(np.sum(model.estimator_weights_))
    nodes: dict[str, list] = {k: [] for k in ("treeids", "nodeids", "featureids", "values", "modes", "truenodeids", "falsenodeids")}
    targets: dict[str, list] = {k: [] for k in ("treeids", "nodeids", "ids", "weights")}
    for tree_id, (stump, w) in enumerate(zip(model.estimators_, weights)):
        tree = stump.tree_
        for node in range(tree.node_count):
            leaf = tree.children_left[node] == -1
            nodes["treeids"].append(tree_id)
            nodes["nodeids"].append(node)
            nodes["featureids"].append(0 if leaf else int(tree.feature[node]))
            nodes["values"].append(0.0 if leaf else _float32_at_most(tree.threshold[node]))
            nodes["modes"].append("LEAF" if leaf else "BRANCH_LEQ")
            nodes["truenodeids"].append(0 if leaf else int(tree.children_left[node]))
            nodes["falsenodeids"].append(0 if leaf else int(tree.children_right[node]))
            if leaf:
                # the stump's predict: argmax of the leaf's class distribution, a tie goes to class 0
                votes_one = tree.value[node, 0, 1] > tree.value[node, 0, 0]
                targets["treeids"].append(tree_id)
                targets["nodeids"].append(node)
                targets["ids"].append(0)
                targets["weights"].append(float(scale * w * (1.0 if votes_one else -1.0)))
    ensemble = helper.make_node(
        "TreeEnsembleRegressor", ["input"], ["decision"], domain="ai.onnx.ml",
        n_targets=1, aggregate_function="SUM", post_transform="NONE", base_values=[0.0],
        **{f"nodes_{k}": v for k, v in nodes.items()}, **{f"target_{k}": v for k, v in targets.items()},
    )
    graph = helper.make_graph(
        [
            ensemble,
            helper.make_node("Sigmoid", ["decision"], ["p1"]),
            helper.make_node("Sub", ["one", "p1"], ["p0"]),
            helper.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1),
        ],
        "adaboost_samme",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, n_inputs])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        initializer=[helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])],
    )
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in OPSETS.items()])
    onx.ir_version = 8  # readable by older ONNX Runtimes too
    onnx.checker.check_model(onx)
    return onx
