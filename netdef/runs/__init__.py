"""Reading training runs (`netdef plot`, `netdef report`, `netdef parse-log`): a netdef run folder (its
TensorBoard events, its log file, the resolved solver and nets, its snapshots), a netdef log, or one of
Caffe's glog training logs, all read into one model: a `Run` of `Series` under TensorBoard's tags
(`train/loss`, `train/lr`, `train/iters_per_second`, `train_outputs/<blob>`, `test/<blob>`, ...).

    from netdef.runs import read_run
    run = read_run("runs/lenet_solver")
    run.series["test/accuracy"]     # [Point(iteration=0, seconds=0.0, value=0.132), ...]
"""
from .model import Point, Run
from .read import read_run

__all__ = ["Point", "Run", "read_run"]
