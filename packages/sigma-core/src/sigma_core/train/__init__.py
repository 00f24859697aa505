"""Training: the loop (:class:`Trainer`), the stage objectives (TRAF + TSAC), which
parameters each stage trains, the optimizer, the runtime, the checkpoint format, and the
refit of a camera-only base's scene estimator on visited states (estimator DAgger)."""

from sigma_core.train.estimator import VisitedStates, named_error, refit_estimator
from sigma_core.train.losses import LossConfig, Ramp, sigma_objective, traf
from sigma_core.train.objective import StageObjective
from sigma_core.train.stages import configure_stage, telepathy_parameter_names
from sigma_core.train.trainer import Trainer, TrainResult, init_source

__all__ = [
    "LossConfig",
    "Ramp",
    "StageObjective",
    "TrainResult",
    "Trainer",
    "VisitedStates",
    "configure_stage",
    "init_source",
    "named_error",
    "refit_estimator",
    "sigma_objective",
    "telepathy_parameter_names",
    "traf",
]
