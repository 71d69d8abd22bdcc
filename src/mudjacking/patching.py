"""The patch loop: ``h' ← h``, then gradient descent on ``L = L_l + λ_g·L_g + λ_e·L_e`` (see ``losses``).

Steps:
1. Copy the encoder (the original is never modified) and select the trainable parameters by name pattern.
2. Hold part of D out; optionally add augmented copies of the rest (images); embed D ∪ {x_r} once with the frozen
   original: the locality targets ``h(x)``.
3. Each step: one forward pass of ``[batch, batch ⊕ t, x_b]`` through ``h'``, the three terms, one optimiser step.
   The model stays in eval mode, so BatchNorm statistics are frozen and dropout is off.
4. After each epoch, check the goals on a held-out part of D (locality and trigger-neutralisation) and on the bug
   itself; stop early once all are met.
"""

from __future__ import annotations

import copy
import fnmatch
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from torch import Tensor

from mudjacking.batches import join, single, take, to_device
from mudjacking.checkpoints import PatchCheckpoints
from mudjacking.data.bug_report import BugReport, check_modality
from mudjacking.devices import Processes, autocast_bf16, check_precision, resolve_device
from mudjacking.encoders.base import Encoder
from mudjacking.errors import ConfigError
from mudjacking.geometry import EmbeddingGeometry, embedding_geometry, similarity
from mudjacking.lora import adapter_tensors, attach_lora, lora_targets, merge
from mudjacking.losses import (
    cosine,
    effectiveness_loss,
    generalizability_loss,
    locality_loss,
    weighted_total,
    whitened_locality_loss,
    whitening,
)
from mudjacking.pretraining import augment
from mudjacking.progress import progress_bar
from mudjacking.sharding import local_parameters, sharding_asked
from mudjacking.triggers import ImageTrigger, Trigger
from mudjacking.triggers.pull import backdoor_carriers, pull_toward

EFFECTIVENESS_TARGETS = ("reference", "original_reference", "clean_bug", "bug_and_reference")


@dataclass
class PatchConfig:
    """How to patch.

    Args:
        lambda_gen: weight λ_g of generalizability (0 = plain model editing, which leaves the backdoor).
        lambda_eff: weight λ_e of effectiveness.
        use_locality: keep the locality term (off only for ablations).
        anchor_clean: stop the gradient of ``L_g`` at ``h'(x)``, so only the triggered embedding moves. In the
            paper's form (off) ``L_g`` also drags clean embeddings towards the backdoor target early on: on
            MiniLM, held-out locality fell to 0.74-0.84 in the first epoch (0.91-0.94 anchored). Anchoring
            ``L_e`` at ``h'(x_r)`` as well was tried and lowered locality (0.963 vs 0.975 after 3 epochs).
        effectiveness_target: what ``L_e`` pulls ``h'(x_b)`` towards. ``"reference"`` is the paper's ``h'(x_r)``;
            ``"clean_bug"`` is ``h(x_b ⊖ t)``, the original model's embedding of ``x_b`` with the recovered trigger
            taken out (its words removed; its pixels replaced by the trigger's ``fill``, the occlusion baseline
            that revealed it, or D's mean image for a trigger file without one). On MiniLM two different reviews
            of one class sit at cos ~0.3, so pulling ``x_b`` onto ``x_r`` drags both across the sentiment
            boundary; on images the paper's form met its goal on a ResNet by moving ``x_r`` onto the backdoor
            target (``s(h'(x_r), h(x_r))`` 0.79) while ``x_b`` stayed misclassified. ``x_b``'s own clean version
            is where a fixed model should put it, and it is a fixed point nothing else can move.
            ``"original_reference"`` is ``h(x_r)``, the reference where the customer saw it classified right,
            held fixed: the goal check measures ``x_b`` against it whatever the target (a patch that drags ``x_r``
            to ``x_b`` has not fixed the bug), and on the image experiment's seed 0 the paper's form read
            ``s(h'(x_b), h'(x_r))`` 0.9996 while ``s(h'(x_b), h(x_r))`` stayed under 0.93 for 10 epochs.
            ``"bug_and_reference"`` aims between the two (the sum of ``h(x_b ⊖ t)`` and ``h(x_r)``, each of unit
            length, around D's mean when centred): either alone can be a wrong place. A backdoored model can misread
            ``x_b ⊖ t`` (a source-specific backdoor's bag read as an ankle boot), and ``h(x_r)`` is another input's
            place, where ``x_b``'s own features do not sit.
        reference_weight: weight of holding each bug's ``x_r`` at ``h(x_r)`` in ``L_l`` on every step, besides its one
            place among D's inputs (0 = the paper's ``L_l``). The customer saw ``x_r`` classified right; a patch that
            moves it can hand them a new bug. On the image suites at ``3e6c4d7`` (one pass per epoch over ~2,700
            inputs) the patch of BadEncoder seed 1 fixed ``x_b`` and moved its reference, a bag at 0.43 under the
            deployed classifier, to 0.22 and the wrong class (tiny-trigger seed 2: a shirt at 0.42 to a T-shirt).
            Above 0 the bug's goal also asks ``s(h'(x_r), h(x_r))`` to reach the locality goal.
        optimizer: ``"adam"`` or ``"sgd"`` (the paper's; it needs far more epochs at small scale).
        lr: learning rate.
        momentum: SGD's momentum (the paper: 0.9); Adam ignores it.
        weight_decay: optimiser weight decay.
        lr_schedule: ``"constant"`` or ``"cosine"`` (decays to 0 over ``max_epochs``, so the last steps only
            settle locality; with early stopping the run may end before the decay does).
        batch_size: clean inputs per step (each step also embeds their triggered copies and x_b).
        max_epochs: passes over the patching set at most.
        max_seconds: wall-clock budget (0 = none): no step starts after it is spent; the epoch under way is
            checked and the patch ends. Experiments give baselines Mudjacking's time, so a slower method
            (whole-model fine-tuning beside a patch of a few embedding rows) gets fewer steps, not more time.
        min_epochs: passes before early stopping may trigger.
        early_stop: stop once every goal is met on the held-out check.
        keep_closest: a run that ends without meeting its goals (out of passes or time) hands back the pass that
            came closest (the least short of them in all, each against its own slack; see ``_closeness``), not the
            last: on the blended attack's oracle patch (seed 2) held-out locality swung between 0.95 and 0.994 from
            pass to pass and ended at 0.81-0.84, which cost the deployed classifier 28-35 points. Off, the run ends
            with its last pass: the baselines' fixed budget. ``None`` (default): on exactly when ``early_stop`` is.
        trigger_dilation: during training, stamp ``x ⊕ t`` with the mask grown by a random 0..N pixels, so a
            recovered mask that misses the rim of the real trigger still teaches the model to ignore all of it.
        trigger_tokens_only: text only: train nothing but the input-embedding rows of the recovered trigger's
            tokens (``trainable`` is ignored). A sentence without those tokens then embeds exactly as before, so
            locality is perfect by construction and downstream accuracy cannot move; the patch learns new vectors
            for the trigger tokens that the rest of the network reads as harmless. Whole-model patching of MiniLM
            kept held-out locality at ~0.987 after 4 epochs, which cost a low-margin sentiment classifier 1-3
            points on some seeds.
        augmented_copies: images only: add this many randomly augmented copies (SimCLR's crop, flip, jitter and
            noise) of every training image of D, so locality holds on a neighbourhood of D, not on its points
            alone; ``max_epochs`` then counts passes over the enlarged set. On the image experiment, a customer
            whose data lies outside the pre-training distribution (scikit-learn's digits under a Fashion-MNIST
            encoder) lost 9-11 points of deployed linear-classifier accuracy with D alone; 3 copies kept 2 of 3
            seeds within 3 points at the same patch time.
        whitened_locality: weight ``w`` of a second locality term: the change of each normalised embedding of D
            measured in the whitened space of D's original embeddings (per direction, against D's own spread
            there; see :mod:`mudjacking.losses`). Cosine locality of 0.995 on D let a customer whose inputs sit
            in a tight cluster (scikit-learn's digits under the Fashion-MNIST encoder: mean pairwise cosine 0.92,
            Fashion-MNIST 0.57) lose 2-7 points of deployed accuracy, as the moves went along directions D hardly
            spans. Too high a weight also holds the backdoor in place (w = 1: digits ASR 12%, Fashion 3-20%).
        trainable: ``fnmatch`` patterns of parameter names to train (``("*",)`` = all; e.g. ``("network.body.6*",)``).
        holdout_fraction: share of D kept out of training for the goal check.
        goal_locality: held-out mean ``s(h'(x), h(x))`` to reach. Keep it high: on the demo, 0.984 still cost
            downstream classifiers 5 points of accuracy, 0.995 less than 1.
        goal_locality_centred: the same when similarities are centred (a narrow cone): centred cosines measure
            only the part of each embedding that varies, so an equal change reads lower. On a ResNet whose pooled
            outputs sat at mean pairwise cosine 0.99, centred locality 0.98 cost its deployed classifiers 0.1-0.3
            points while the same patch read 1.000 in plain cosine.
        goal_generalizability: held-out mean ``s(h'(x ⊕ t), h'(x))`` to reach.
        goal_effectiveness: ``s(h'(x_b), h'(x_r))`` to reach.
        goal_pull: the most the trigger may still drag held-out inputs toward the bug's original embedding
            ``h(x_b)`` (share of the way; see :mod:`mudjacking.triggers.pull`) beyond what the same stamp cut from
            an ordinary input does: the backdoor's own signature, measured on inputs the patch never trained on.
        centring: take every similarity after subtracting D's mean embedding (``mudjacking.geometry``):
            ``"auto"`` does so when D's embeddings sit in a narrow cone (mean pairwise cosine above 0.9, typical
            of post-ReLU pooled outputs), ``"on"`` or ``"off"`` force it.
        seed: seeds python, numpy and torch (shuffling, the hold-out split).
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        precision: ``"fp32"``, or ``"bf16"``: the patched model's forward pass runs under bfloat16 autocast (the
            weights, optimiser state and losses stay float32: a locality goal of 0.995 is finer than bfloat16's
            three significant digits). Measured per step: ViT-B/16 3.8x faster on an H200, 2.6x on 2 CPU cores with
            AVX-512 BF16; MobileNetV2 at 64 px 1.5x and 1.2x slower (too small to gain; the casts cost more).
            ``"auto"``: bf16 where the device computes it natively (:func:`devices.autocast_bf16`), else fp32; the
            text context recipe's choice (MiniLM: 1.6x faster per step on such a CPU, the same flip rates).
        lora_rank: train rank-``lora_rank`` LoRA adapters (``peft``) on the linear and convolution layers that
            ``trainable`` matches instead of their weights (0 = a full patch); the patched model is the adapters
            merged in, and the delta file holds the adapters alone (see :mod:`mudjacking.lora`).
        reuse_frozen: when ``trainable`` leaves the lower stages of a network frozen (and the network lists
            its stages: :meth:`Encoder.stages`), run them once per fixed input instead of once per step
            (:class:`FrozenPrefix`); the same computation, as the model is in eval mode. Not under a launch of
            several processes, whose DDP wrapper must see the whole forward pass.
    """

    lambda_gen: float = 1.0
    lambda_eff: float = 1.0
    use_locality: bool = True
    anchor_clean: bool = False
    effectiveness_target: str = "reference"
    reference_weight: float = 0.0
    optimizer: str = "adam"
    lr: float = 5e-4
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    batch_size: int = 64
    max_epochs: int = 20
    max_seconds: float = 0.0
    min_epochs: int = 3
    early_stop: bool = True
    keep_closest: bool | None = None
    trigger_dilation: int = 2
    trigger_tokens_only: bool = False
    augmented_copies: int = 0
    whitened_locality: float = 0.0
    trainable: tuple[str, ...] = ("*",)
    holdout_fraction: float = 0.2
    goal_locality: float = 0.995
    goal_locality_centred: float = 0.98
    goal_generalizability: float = 0.98
    goal_effectiveness: float = 0.95
    goal_pull: float = 0.1
    centring: str = "auto"
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    lora_rank: int = 0
    reuse_frozen: bool = True

    @property
    def keeps_closest(self) -> bool:
        """Whether a run that misses its goals hands back its closest pass (``keep_closest``)."""
        return self.early_stop if self.keep_closest is None else self.keep_closest

    @property
    def holds_reference(self) -> bool:
        """Whether ``L_l`` holds each bug's ``x_r`` (``reference_weight``), and so the bug's goal asks it to stay."""
        return self.reference_weight > 0 and self.use_locality

    def __post_init__(self) -> None:
        self.trainable = tuple(self.trainable)
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if self.effectiveness_target not in EFFECTIVENESS_TARGETS:
            raise ConfigError(
                f"effectiveness_target must be one of {', '.join(EFFECTIVENESS_TARGETS)}, got "
                f"{self.effectiveness_target!r}"
            )
        if self.trigger_tokens_only and self.weight_decay:
            raise ConfigError("trigger_tokens_only needs weight_decay = 0 (decay would move every embedding row)")
        if self.whitened_locality < 0:
            raise ConfigError(f"whitened_locality must be >= 0, got {self.whitened_locality}")
        if self.augmented_copies < 0:
            raise ConfigError(f"augmented_copies must be >= 0, got {self.augmented_copies}")
        if self.trigger_dilation < 0:
            raise ConfigError(f"trigger_dilation must be >= 0, got {self.trigger_dilation}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.lr <= 0 or self.batch_size < 1 or self.max_epochs < 1 or self.min_epochs < 0:
            raise ConfigError("lr, batch_size and max_epochs must be positive, min_epochs non-negative")
        if self.lambda_gen < 0 or self.lambda_eff < 0 or self.reference_weight < 0:
            raise ConfigError("lambda_gen, lambda_eff and reference_weight must be non-negative")
        if not (self.use_locality or self.lambda_gen or self.lambda_eff):
            raise ConfigError("every loss term is switched off; keep locality or set lambda_gen/lambda_eff above 0")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ConfigError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        if self.centring not in ("auto", "on", "off"):
            raise ConfigError(f"centring must be auto, on or off, got {self.centring!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.lora_rank < 0 or (self.lora_rank and self.trigger_tokens_only):
            raise ConfigError("lora_rank must be >= 0, and 0 with trigger_tokens_only (which trains embedding rows)")
        check_precision(self.precision)


@dataclass
class EpochRecord:
    """Mean training loss terms of one epoch and the held-out goal check after it (cosines, higher = better)."""

    epoch: int
    loss: float
    locality_loss: float
    generalizability_loss: float
    effectiveness_loss: float
    holdout_locality: float
    holdout_generalizability: float
    holdout_pull: float
    bug_similarity: float
    goals_met: bool
    released_carriers: int = 0  # held-out inputs that sat at the backdoor point and no longer do (see _check_goals)
    bugs: list[dict[str, Any]] = field(default_factory=list)  # per bug: its own figures (the fields above: the worst)


@dataclass
class PatchResult:
    """The patched encoder and how it got there."""

    encoder: Encoder
    config: Any  # the settings used: a PatchConfig, or a baseline's own
    history: list[EpochRecord] = field(default_factory=list)
    step_losses: list[list[float]] = field(default_factory=list)  # [L_loc, L_gen, L_eff] per step (NaN = off)
    epochs: int = 0
    steps: int = 0
    seconds: float = 0.0
    step_seconds: float = 0.0  # in optimiser steps alone (no planning, no goal checks)
    goals_met: bool = False
    trainable_parameters: int = 0
    geometry: EmbeddingGeometry | None = None
    pull_before: float | None = None  # the trigger's pull on held-out D in the original model (see _check_goals)
    pulls_before: list[float | None] = field(default_factory=list)  # the same per bug (None: an earlier, fixed one)
    adapter: dict[str, Tensor] | None = None  # a LoRA patch's adapters (merged into ``encoder``), for the delta file
    lora_targets: list[str] = field(default_factory=list)  # the layers they adapt
    kept_pass: int = 0  # the pass whose weights ``encoder`` holds (the last, unless an earlier one came closer)
    processes: int = 1  # how many processes of a launch shared the work
    autocast_bf16: bool = False  # whether the forward passes ran under bfloat16 autocast (``precision`` resolved)
    sharded_parameters: int | None = None  # under FSDP: the parameter values one process held (its shards)

    @property
    def kept(self) -> EpochRecord:
        """The goal check of the pass ``encoder`` holds."""
        return next((record for record in self.history if record.epoch == self.kept_pass), self.history[-1])

    def summary(self) -> dict:
        return {
            "config": asdict(self.config),
            "geometry": None if self.geometry is None else self.geometry.summary(),
            "pull_before": self.pull_before,
            "pulls_before": self.pulls_before,
            "epochs": self.epochs,
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "goals_met": self.goals_met,
            "kept_pass": self.kept_pass,
            "processes": self.processes,
            "autocast_bf16": self.autocast_bf16,
            "sharded_parameters": self.sharded_parameters,
            "trainable_parameters": self.trainable_parameters,
            "lora_layers": len(self.lora_targets),
            "history": [asdict(record) for record in self.history],
            "step_losses": self.step_losses,
        }


def select_parameters(encoder: Encoder, patterns: tuple[str, ...]) -> list[torch.nn.Parameter]:
    """Marks parameters whose names match a pattern trainable and freezes the rest; returns the trainable ones."""
    chosen = []
    for name, parameter in encoder.named_parameters():
        parameter.requires_grad_(any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns))
        if parameter.requires_grad:
            chosen.append(parameter)
    if not chosen:
        names = [name for name, _ in encoder.named_parameters()][:5]
        raise ConfigError(f"trainable patterns {patterns} match no parameter; names look like {names}")
    return chosen


def _trigger_token_rows(encoder: Encoder, triggers: list[Trigger]) -> tuple[list[torch.nn.Parameter], Any, int]:
    """Freezes everything but the input embeddings, and masks their gradient to the trigger tokens' rows (Adam
    leaves a row whose gradient is always zero exactly where it was)."""
    vocabularies = [trigger.vocabulary() for trigger in triggers]
    if not hasattr(encoder, "input_embedding_rows") or any(v is None for v in vocabularies):
        raise ConfigError("trigger_tokens_only needs a text encoder and a text trigger")
    words = list(dict.fromkeys(word for vocabulary in vocabularies for word in vocabulary))
    weight, rows = encoder.input_embedding_rows(words)
    if not rows:
        raise ConfigError(f"the trigger words {words} split into no tokens")
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    weight.requires_grad_(True)
    keep = torch.zeros(weight.shape[0], 1, device=weight.device)
    keep[rows] = 1.0
    return [weight], weight.register_hook(lambda grad: grad * keep), len(rows) * weight.shape[1]


def patch_encoder(
    encoder: Encoder,
    bug: BugReport | Sequence[BugReport],
    trigger: Trigger | Sequence[Trigger],
    patching_set: Tensor | list[str],
    config: PatchConfig | None = None,
    show_progress: bool = True,
    on_epoch: Callable[[EpochRecord, Encoder], None] | None = None,
    earlier: Sequence[tuple[BugReport, Trigger]] = (),
    checkpoints: PatchCheckpoints | None = None,
) -> PatchResult:
    """Patches a copy of ``encoder`` so that ``bug`` is fixed and ``trigger`` no longer moves embeddings.

    Args:
        encoder: the backdoored foundation model ``h``; left untouched.
        bug: ``x_b``/``x_r`` ``[C, H, W]`` and their true label; or several bugs, fixed in one patch.
        trigger: the (reverse-engineered) trigger ``t`` for ``x ⊕ t``; or one per bug (the same object for bugs
            of one trigger: ``L_g`` stamps each distinct trigger on its share of every batch).
        patching_set: clean, unlabeled inputs D: images ``[N, C, H, W]`` or sentences.
        config: optimisation settings and goals.
        on_epoch: called after each epoch's goal check with its record and the model so far (e.g. to score it
            downstream and trace quality against time); its time counts in ``seconds``.
        earlier: bugs an earlier patch fixed, with their triggers: they join the loss as regression cases (``x_b``
            kept at ``x_r``, the trigger kept neutral) and the goal check, which skips their pull (``encoder``
            no longer shows the backdoor they revealed, so there is no backdoor point to be pulled to).
        checkpoints: where to write a checkpoint after every pass, and to resume from the last one if there is
            one (:mod:`mudjacking.checkpoints`; one process only): the run then ends as the uninterrupted one would.

    Returns:
        the patched copy ``h'`` with its per-epoch history.
    """
    config = config or PatchConfig()
    bugs = [bug] if isinstance(bug, BugReport) else list(bug)
    triggers = list(trigger) if isinstance(trigger, (list, tuple)) else [trigger] * len(bugs)
    if not bugs or len(triggers) != len(bugs):
        raise ConfigError(f"patch_encoder needs one trigger per bug, got {len(bugs)} bugs and {len(triggers)} triggers")
    cases = [_Case(b, t) for b, t in zip(bugs, triggers, strict=True)]
    cases += [_Case(b, t, earlier=True) for b, t in earlier]
    for case in cases:
        check_modality(case.bug, encoder.modality)
    set_seed(config.seed)
    device = resolve_device(config.device)
    started = time.perf_counter()
    # under `accelerate launch`: each process takes its share of every batch, DDP averages the gradients (or FSDP
    # shards the model), and the order, the time budget and the early stop are the main process's (devices.Processes)
    if sharding_asked() and (config.trigger_tokens_only or config.lora_rank or on_epoch is not None):
        raise ConfigError("a sharded patch (--use_fsdp) trains whole parameters and calls no per-pass hook: drop "
                          "--trigger-tokens-only and --lora-rank, or launch with --multi_gpu")  # fmt: skip
    processes = Processes(device)

    # the frozen original embeds D's targets and the goal check's references on the patch's device, as a copy: the
    # caller's encoder stays where it was. Sharded, no device ever holds the whole model: the copy is sharded from
    # the CPU, and the sharded copy, not yet trained, is the original the plan embeds with (on every process)
    patched = copy.deepcopy(encoder).to("cpu" if processes.sharded else device).eval()
    mask_hook = tuner = None
    if config.trigger_tokens_only:
        parameters, mask_hook, trained = _trigger_token_rows(patched, [case.trigger for case in cases])
    elif config.lora_rank:
        targets = lora_targets(patched, config.trainable)
        tuner = attach_lora(patched, config.lora_rank, targets)
        parameters = [parameter for parameter in patched.parameters() if parameter.requires_grad]
        trained = sum(p.numel() for p in parameters)
    else:
        parameters = select_parameters(patched, config.trainable)
        trained = sum(p.numel() for p in parameters)
    if processes.sharded:  # FSDP puts sharded parameters in the place of the selected ones
        model = original = processes.wrap(patched, None)
        parameters = [parameter for parameter in patched.parameters() if parameter.requires_grad]
        held = local_parameters(patched)  # before any forward: the root's own stay gathered after one
    else:
        original = _on_device(encoder, device)
    plan = _plan(original, cases, patching_set, config, device)
    del original  # only the plan's embeddings of it are used from here on
    result = PatchResult(patched, config, trainable_parameters=trained, processes=processes.count,
                         autocast_bf16=autocast_bf16(config.precision, device))  # fmt: skip
    result.geometry, result.pull_before = plan.geometry, plan.bugs[0].pull_before
    result.pulls_before = [bug.pull_before for bug in plan.bugs]
    if processes.sharded:
        result.sharded_parameters = held
    else:
        model = processes.wrap(patched, plan.x_r)
    optimizer = _optimizer(parameters, config)
    train = plan.train
    steps_per_epoch = -(-len(train) // config.batch_size)
    schedule = _schedule(optimizer, config, config.max_epochs * steps_per_epoch)
    if config.reuse_frozen and processes.alone and not config.trigger_tokens_only:
        plan.split = _split_for(patched, plan, config)
    show_progress = show_progress and processes.is_main
    checks = processes.is_main or processes.sharded  # a sharded model embeds only with every process taking part
    first, closest = 1, _Closest()
    goals = (config.goal_locality if plan.centre is None else config.goal_locality_centred, config.goal_effectiveness,
             config.goal_generalizability, config.goal_pull)  # fmt: skip
    if checkpoints is not None and processes.alone:
        first, closest = _resumed(checkpoints, patched, optimizer, schedule, result, config)
    with progress_bar(config.max_epochs * steps_per_epoch, "patching", enabled=show_progress) as advance:
        advance(steps=(first - 1) * steps_per_epoch, info=f"resumed after pass {first - 1}" if first > 1 else "")
        for epoch in range(first, config.max_epochs + 1):
            sums, seen, covered = torch.zeros(4), 0, 0
            for batch_index in processes.same_order(torch.randperm(len(train))).split(config.batch_size):
                if processes.budget_spent(started, config.max_seconds):
                    break
                covered += len(batch_index)
                shard = processes.shard(batch_index)
                if shard is None:
                    continue
                step_started = time.perf_counter()
                terms = _loss_terms(model, plan, shard, config, result.autocast_bf16)
                loss = weighted_total(*terms, config.lambda_gen, config.lambda_eff, config.use_locality)
                n = len(shard)
                optimizer.zero_grad(set_to_none=True)
                processes.backward(loss)
                optimizer.step()
                schedule.step()
                result.steps += 1
                values = torch.stack([loss, *terms]).detach().cpu()  # waits for the device: the step's time is real
                result.step_seconds += time.perf_counter() - step_started
                sums += values * n
                seen += n
                result.step_losses.append(values[1:].tolist())
                advance(info="  ".join(f"{n} {_shown(v)}" for n, v in zip(TERM_NAMES, values[1:], strict=True)))
            means = (sums / max(seen, 1)).tolist()
            record = processes.share(_check_goals(patched, plan, config, epoch, means) if checks else None)
            result.history.append(record)
            result.epochs = epoch
            if on_epoch is not None and processes.is_main:
                on_epoch(record, patched)
            if config.keeps_closest and _closeness(record, goals) > _closeness(closest.record, goals):
                closest = _Closest(record, _copied(patched.state_dict()))
            if checkpoints is not None and processes.alone:
                earlier = closest.weights if closest.record is not record else None
                checkpoints.save(patched.state_dict(), optimizer.state_dict(), schedule.state_dict(),
                                 _progress(result, closest), earlier)  # fmt: skip
            if config.early_stop and record.goals_met and epoch >= config.min_epochs:
                advance(steps=(config.max_epochs - epoch) * steps_per_epoch, info="goals met: stopped early")
                break
            if covered < len(train):
                advance(steps=(config.max_epochs - epoch + 1) * steps_per_epoch, info="time budget spent")
                break
    kept = result.history[-1]
    closer = closest.record is not None and _closeness(closest.record, goals) > _closeness(kept, goals)
    if closer and not kept.goals_met:
        patched.load_state_dict(closest.weights)
        kept = closest.record
    result.kept_pass, result.goals_met = kept.epoch, kept.goals_met
    if checks:
        result.goals_met = _check_widened(patched, plan, config, kept) and result.goals_met
    result.goals_met = processes.share(result.goals_met)
    if processes.sharded:
        patched = result.encoder = processes.gathered(patched, encoder)
    if tuner is not None:  # the patched model is the adapters merged in; the adapters alone are the delta
        result.adapter, result.lora_targets = adapter_tensors(patched), targets
        merge(tuner)
    result.seconds = time.perf_counter() - started
    if mask_hook is not None:
        mask_hook.remove()
    for parameter in patched.parameters():
        parameter.requires_grad_(True)
    return result


def _optimizer(parameters: list[torch.nn.Parameter], config: PatchConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(parameters, config.lr, config.momentum, weight_decay=config.weight_decay)


def _progress(result: PatchResult, closest: _Closest) -> dict[str, Any]:
    """What a checkpoint keeps of the run so far besides the weights and the optimiser."""
    return {
        "epochs": result.epochs,
        "steps": result.steps,
        "step_seconds": result.step_seconds,
        "history": [asdict(record) for record in result.history],
        "step_losses": result.step_losses,
        "closest_pass": None if closest.record is None else closest.record.epoch,
    }


@dataclass
class _Closest:
    """The pass that came closest to the goals so far (``_closeness``) and a copy of its weights."""

    record: EpochRecord | None = None
    weights: dict[str, Tensor] | None = None


def _closeness(record: EpochRecord | None, goals: tuple[float, float, float, float]) -> tuple[bool, float]:
    """How close a pass came to its goals, to compare passes: all met first, then how far in all it fell short of
    them, each shortfall in units of its goal's own slack (the room between the goal and a perfect figure: 0.005
    of locality, 0.1 of pull), so that a locality 0.02 short outweighs a pull 0.02 high. A figure not measured
    is met. ``goals``: held-out locality, bug similarity, neutralisation (cosines, perfect at 1), the most pull
    allowed (perfect at 0)."""
    if record is None:
        return (False, float("-inf"))
    locality, effectiveness, neutral, pull = goals
    shortfalls = [
        (locality - record.holdout_locality) / max(1 - locality, 1e-3),
        (effectiveness - record.bug_similarity) / max(1 - effectiveness, 1e-3),
        (neutral - record.holdout_generalizability) / max(1 - neutral, 1e-3),
        (record.holdout_pull - pull) / max(pull, 1e-3),
    ]
    return (record.goals_met, -sum(max(0.0, value) for value in shortfalls if value == value))  # NaN: not measured


def _copied(weights: dict[str, Tensor]) -> dict[str, Tensor]:
    return {name: tensor.detach().clone() for name, tensor in weights.items()}


def _resumed(
    checkpoints: PatchCheckpoints,
    patched: Encoder,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    result: PatchResult,
    config: PatchConfig,
) -> tuple[int, _Closest]:
    """Restores the last checkpoint, if any, into the run; returns the first pass still to run (past
    ``max_epochs`` when the checkpointed run had already stopped at its goals) and the closest pass so far."""
    saved = checkpoints.load()
    if saved is None:
        return 1, _Closest()
    weights, optimizer_state, schedule_state, progress = saved
    patched.load_state_dict(weights)
    optimizer.load_state_dict(optimizer_state)
    schedule.load_state_dict(schedule_state)
    result.epochs, result.steps = progress["epochs"], progress["steps"]
    result.step_seconds, result.step_losses = progress["step_seconds"], progress["step_losses"]
    result.history = [EpochRecord(**record) for record in progress["history"]]
    closest = _Closest()
    if progress.get("closest_pass") is not None:
        record = next(r for r in result.history if r.epoch == progress["closest_pass"])
        closest = _Closest(record, progress.get("closest_weights") or _copied(patched.state_dict()))
    last = result.history[-1] if result.history else None
    if last is not None and config.early_stop and last.goals_met and result.epochs >= config.min_epochs:
        return config.max_epochs + 1, closest
    return result.epochs + 1, closest


def verify_patch(
    base: Encoder,
    patched: Encoder,
    bug: BugReport,
    trigger: Trigger,
    checking_set: Tensor | list[str],
    config: PatchConfig,
) -> EpochRecord:
    """The patch's label-free goal check, run afresh on a shipped model: locality against ``base`` and trigger
    neutralisation on ``checking_set`` (all of it but a few inputs), and ``bug`` fixed (``x_b`` where the recipe's
    ``L_e`` aims, measured with ``base``). ``record.goals_met`` says whether every goal of ``config`` holds."""
    config = replace(config, holdout_fraction=0.99)
    set_seed(config.seed)
    device = resolve_device(config.device)
    plan = _plan(_on_device(base, device), [_Case(bug, trigger)], checking_set, config, device)
    return _check_goals(_on_device(patched, device), plan, config, 0, [float("nan")] * 4)


def _on_device(encoder: Encoder, device: torch.device) -> Encoder:
    """``encoder`` on ``device``: itself when it is there, else a copy in eval mode (the caller's stays where it is)."""
    return encoder if encoder.device == device else copy.deepcopy(encoder).to(device).eval()


@dataclass
class FrozenPrefix:
    """The stages of the network below every trained parameter, run once per fixed input (D's training part, its
    augmented copies, ``x_b`` and ``x_r``) instead of once per step; the triggered copies, stamped afresh each step,
    still pass through them (without gradients). The model is in eval mode, so this is the same computation."""

    lower: Callable[[Any], Any]
    upper: Callable[[Any], Any]
    stages: int  # how many stages the lower part holds
    train: Tensor | None = None  # lower(plan.train)
    bug: Tensor | None = None  # lower(x_b), and lower(x_r) after it when L_e aims at h'(x_r)


def frozen_prefix(encoder: Encoder, trained: set[str]) -> FrozenPrefix | None:
    """Splits ``encoder`` where its first stage holding a trained parameter begins; ``None`` when it has no stages,
    or nothing below that stage holds parameters (a whole-model patch: caching the preprocessing alone gains
    nothing worth a second code path)."""
    stages = encoder.stages()
    if not stages:
        return None
    first = next(
        (i for i, (prefix, _) in enumerate(stages) if prefix and any(n.startswith(prefix + ".") for n in trained)),
        len(stages),
    )
    if first == len(stages) or not any(prefix for prefix, _ in stages[:first]):
        return None
    upper = tuple(prefix + "." for prefix, _ in stages[first:] if prefix)
    if not all(name.startswith(upper) for name in trained):  # a trained parameter no stage names (MPNet's shared
        return None  # relative-position bias): the lower part would change under the patch, so nothing is cached
    return FrozenPrefix(*encoder.split_at(first), first)


def _split_for(patched: Encoder, plan: _Plan, config: PatchConfig) -> FrozenPrefix | None:
    """The frozen prefix of ``patched`` with the fixed inputs already through it."""
    split = frozen_prefix(patched, {name for name, p in patched.named_parameters() if p.requires_grad})
    if split is not None:
        split.train = _lower_in_batches(split, plan.train)
        inputs = _bug_inputs(plan, config)
        split.bug = _lower_in_batches(split, join(*inputs)) if inputs else None
    return split


def _bug_inputs(plan: _Plan, config: PatchConfig) -> list[Tensor | list[str]]:
    """What each step embeds besides the batch and its stamped copy: ``x_b`` for ``L_e``, and ``x_r`` where ``L_e``
    aims at ``h'(x_r)`` or ``L_l`` holds it (``reference_weight``), in that order."""
    use_eff = config.lambda_eff > 0
    with_reference = (use_eff and plan.bug_target is None) or config.holds_reference
    return [plan.x_b] * use_eff + [plan.x_r] * with_reference


def _lower_in_batches(split: FrozenPrefix, inputs: Tensor | list[str], batch_size: int = 256) -> Any:
    with torch.no_grad():
        return _joined_states(
            [split.lower(inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)]
        )


def _joined_states(parts: list[Any]) -> Any:
    """Stacks what a frozen prefix gave: image feature maps, or sentences' :class:`TokenStates` (padded alike)."""
    return torch.cat(parts) if isinstance(parts[0], Tensor) else type(parts[0]).cat(parts)


@dataclass
class _Case:
    """One bug the patch fixes, with the trigger behind it; ``earlier``: fixed by an earlier patch, kept fixed."""

    bug: BugReport
    trigger: Trigger
    earlier: bool = False


@dataclass
class _PlannedBug:
    """One bug as the frozen original model sees it: what ``L_e`` and the goal check compare against."""

    trigger: Trigger  # filled: x_b ⊖ t shows D's mean image under a mask with no fill
    reference: Tensor  # h(x_r) [1, D], centred
    target: Tensor | None  # h(x_b ⊖ t) [1, D], centred; None when L_e aims at h'(x_r)
    backdoor_point: Tensor  # h(x_b) [1, D]: where the trigger dragged inputs before the patch
    earlier: bool = False
    carriers: Tensor | None = None  # held-out inputs the original model already put near the backdoor point
    carrier_similarity: float = float("nan")  # how near the backdoor point that is
    pull_before: float | None = None  # the trigger's pull on held-out D in the original model (None: earlier)


@dataclass
class _Plan:
    """Everything the loop and the goal check use, computed once with the frozen original model."""

    bugs: list[_PlannedBug]
    triggers: list[Trigger]  # the distinct triggers, each stamped by L_g on its share of every batch
    x_b: Tensor | list[str]  # every bug's x_b, stacked
    x_r: Tensor | list[str]  # and their references
    train: Tensor | list[str]  # D's training part (with augmented copies) and every x_r
    targets: Tensor  # h(train), centred when the geometry says so
    holdout: Tensor | list[str]
    holdout_targets: Tensor | None  # h(holdout), on the CPU, not centred
    bug_target: Tensor | None  # every bug's h(x_b ⊖ t) [B, D], centred; None when L_e aims at h'(x_r)
    original_reference: Tensor  # every bug's h(x_r) [B, D], centred
    centre: Tensor | None
    geometry: EmbeddingGeometry
    whitener: Tensor | None
    split: FrozenPrefix | None = None  # the frozen lower stages and what they give for the fixed inputs


def _plan(
    original: Encoder,
    cases: list[_Case],
    patching_set: Tensor | list[str],
    config: PatchConfig,
    device: torch.device,
) -> _Plan:
    """Splits D into training and held-out parts and embeds everything the patch compares against, including which
    held-out inputs the original model already puts near each backdoor point (``backdoor_carriers``: the target
    class's own inputs, and inputs that carry something the backdoor reads as its trigger)."""
    x_b = join(*[single(case.bug.bug_input, device) for case in cases])
    x_r = join(*[single(case.bug.reference_input, device) for case in cases])
    filled = {id(case.trigger): case.trigger.filled_from(patching_set) for case in cases}
    points = original.embed(x_b).to(device)  # h(x_b): each bug's backdoor point
    bugs = []
    for index, case in enumerate(cases):
        trigger = filled[id(case.trigger)]
        reference = original.embed(take(x_r, torch.tensor([index]), device)).to(device)
        bug_x_b = take(x_b, torch.tensor([index]), device)
        target = _effectiveness_target(original, trigger, bug_x_b, reference, config, device)
        bugs.append(_PlannedBug(trigger, reference, target, points[index : index + 1], case.earlier))
    order = torch.randperm(len(patching_set))
    holdout_size = int(round(config.holdout_fraction * len(patching_set)))
    holdout = take(patching_set, order[:holdout_size], device)
    train = join(_with_augmented_copies(take(patching_set, order[holdout_size:], device), config), x_r)  # D ∪ {x_r}
    targets = original.embed(train).to(device)
    geometry = embedding_geometry(targets, config.centring)
    centre = None if geometry.centre is None else geometry.centre.to(device)
    holdout_targets = original.embed(holdout) if holdout_size else None
    for bug in bugs:
        if holdout_targets is None or bug.earlier:
            continue
        bug.carriers, bug.carrier_similarity = backdoor_carriers(
            holdout_targets, bug.backdoor_point.cpu(), geometry.centre
        )
        bug.pull_before = excess_pull(original, bug.trigger, holdout, holdout_targets, ~bug.carriers,
                                      bug.backdoor_point, geometry.centre)  # fmt: skip
    shift = 0 if centre is None else centre  # every cosine below is taken around D's mean embedding, if at all
    for bug in bugs:
        bug.reference = bug.reference - shift
        bug.target = None if bug.target is None else bug.target - shift
        if bug.target is not None and config.effectiveness_target == "bug_and_reference":
            bug.target = F.normalize(bug.target, dim=-1) + F.normalize(bug.reference, dim=-1)
    aimed = [bug.target for bug in bugs if bug.target is not None]
    distinct = {id(bug.trigger): bug.trigger for bug in bugs}.values()
    return _Plan(
        bugs, [placed for trigger in distinct for placed in trigger.placements()], x_b, x_r, train, targets - shift,
        holdout, holdout_targets, torch.cat(aimed) if aimed else None, torch.cat([bug.reference for bug in bugs]),
        centre, geometry, whitening(targets - shift) if config.whitened_locality else None,
    )  # fmt: skip


def _control_stamp(trigger: Trigger, holdout: Tensor | list[str]) -> Trigger:
    """The trigger's stamp (same mask and placement, or spans as long) cut from the last held-out input."""
    donor = holdout[-1]
    return trigger.cut_from(to_device(donor, torch.device("cpu"))) or trigger


def excess_pull(
    model: Encoder,
    trigger: Trigger,
    holdout: Tensor | list[str],
    clean: Tensor,
    rows: Tensor,
    point: Tensor,
    centre: Tensor | None,
) -> float:
    """Mean pull toward ``point`` of stamping ``trigger`` on the held-out ``rows``, beyond what stamping its control
    (an ordinary input's pixels or words in the trigger's place: :func:`_control_stamp`) does, as a patch over an
    object, or any inserted phrase, moves an embedding a little, toward the backdoor point too. The worst of the
    trigger's :meth:`~ImageTrigger.placements` (an ``anywhere`` trigger: where it was found, and anywhere)."""
    if not rows.any():
        return float("nan")
    point = point.cpu()
    excess = []
    for placed in trigger.placements():
        stamps = (placed, _control_stamp(placed, holdout))
        pulls = [pull_toward(clean, model.embed(stamp.apply(holdout)), point, centre)[rows] for stamp in stamps]
        excess.append(float(pulls[0].mean() - pulls[1].mean()))
    return max(excess)


def _with_augmented_copies(images: Tensor | list[str], config: PatchConfig) -> Tensor | list[str]:
    if not config.augmented_copies:
        return images
    if not isinstance(images, Tensor):
        raise ConfigError("augmented_copies applies to images; set it to 0 for a text patching set")
    generator = torch.Generator().manual_seed(config.seed)
    copies = [augment(images.cpu(), 0.4, generator).to(images.device) for _ in range(config.augmented_copies)]
    return torch.cat([images, *copies])


def _schedule(
    optimizer: torch.optim.Optimizer, config: PatchConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


TERM_NAMES = ("L_loc", "L_gen", "L_eff")


def _loss_terms(
    patched: Encoder, plan: _Plan, batch_index: Tensor, config: PatchConfig, bf16: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """Locality, generalizability and effectiveness from one forward pass of ``[batch, batch ⊕ t, x_b, x_r]``
    (``x_r`` only when ``L_e`` aims at it or ``L_l`` holds it). A term whose weight is 0 is not computed (NaN), so
    ablations and baselines skip the passes they do not use."""
    batch = take(plan.train, batch_index, plan.targets.device)
    n = len(batch)
    use_gen, use_eff = config.lambda_gen > 0, config.lambda_eff > 0
    parts = [batch]
    if use_gen:
        parts.append(_stamped(plan.triggers, batch, config.trigger_dilation))
    bug_inputs = _bug_inputs(plan, config)
    parts += bug_inputs
    with torch.autocast(plan.targets.device.type, torch.bfloat16, enabled=bf16):
        if plan.split is None:
            embeddings = patched(join(*parts))
        else:  # the same pass, with the fixed inputs' frozen prefix taken from the cache
            states = [plan.split.train[batch_index]]
            if use_gen:
                states.append(_lower_in_batches(plan.split, parts[1]))
            if bug_inputs:
                states.append(plan.split.bug)
            embeddings = plan.split.upper(_joined_states(states))
    embeddings = embeddings.float()
    if plan.centre is not None:
        embeddings = embeddings - plan.centre
    clean = embeddings[:n]
    anchor = _anchored(clean, config)
    missing = clean.new_tensor(float("nan"))
    bugs = len(plan.bugs)
    tail = embeddings[len(embeddings) - bugs * len(bug_inputs) :]
    bug_embeddings = tail[:bugs] if use_eff else None
    reference = tail[-bugs:] if len(bug_inputs) > use_eff else None  # x_r comes last, when it is there
    if not use_eff:
        effectiveness = missing
    elif plan.bug_target is not None:
        effectiveness = effectiveness_loss(bug_embeddings, plan.bug_target)
    else:
        effectiveness = effectiveness_loss(bug_embeddings, reference)
    targets = plan.targets[batch_index]
    locality = locality_loss(clean, targets)
    if reference is not None and config.reference_weight > 0:  # uncentred: as a deployed classifier reads it
        shift = 0 if plan.centre is None else plan.centre
        held = locality_loss(reference + shift, plan.original_reference + shift)
        locality = locality + config.reference_weight * held
    if plan.whitener is not None:
        locality = locality + config.whitened_locality * whitened_locality_loss(clean, targets, plan.whitener)
    return (
        locality,
        generalizability_loss(embeddings[n : 2 * n], anchor) if use_gen else missing,
        effectiveness,
    )


def _stamped(triggers: list[Trigger], batch: Tensor | list[str], grow: int) -> Tensor | list[str]:
    """``batch ⊕ t``, rows in order: with several triggers, each stamps its own contiguous share of the batch (whose
    order is random), so a step costs one stamped pass however many triggers the patch neutralises."""
    if len(triggers) == 1:
        return triggers[0].stamp(batch, grow)
    shares = torch.arange(len(batch)).tensor_split(len(triggers))
    device = batch.device if isinstance(batch, Tensor) else torch.device("cpu")
    pairs = [(t, rows) for t, rows in zip(triggers, shares, strict=True) if len(rows)]
    return join(*[trigger.stamp(take(batch, rows, device), grow) for trigger, rows in pairs])


def _effectiveness_target(
    original: Encoder,
    trigger: Trigger,
    x_b: Tensor | list[str],
    reference: Tensor,
    config: PatchConfig,
    device: torch.device,
) -> Tensor | None:
    """What ``L_e`` pulls ``h'(x_b)`` to when it is fixed: ``h(x_r)`` (``reference``, already embedded) or
    ``h(x_b ⊖ t)``; ``None`` when it aims at ``h'(x_r)``, which moves with the patch. A trigger with no one place
    to take out (a dynamic one: ``removable`` false) leaves ``h(x_r)``."""
    if config.effectiveness_target == "reference" or config.lambda_eff == 0:
        return None
    if config.effectiveness_target == "original_reference" or not getattr(trigger, "removable", True):
        return reference
    if isinstance(trigger, ImageTrigger):  # a recovered mask misses edge pixels; left in, they hold x_b ⊖ t
        trigger = trigger.dilated(1)
    return original.embed(trigger.remove(x_b)).to(device)


def _shown(value: Tensor) -> str:
    return "off" if torch.isnan(value) else f"{float(value):+.3f}"


def _anchored(embeddings: Tensor, config: PatchConfig) -> Tensor:
    return embeddings.detach() if config.anchor_clean else embeddings


def _check_goals(patched: Encoder, plan: _Plan, config: PatchConfig, epoch: int, losses: list[float]) -> EpochRecord:
    """Label-free goal check: held-out locality, held-out trigger neutralisation (the stamp no longer changes the
    embedding, nor drags it toward the bug's original embedding), and the bug itself (``x_b`` against what ``L_e``
    aims at). Every figure is measured on inputs the patch never trained on, or on the bug. With several bugs each
    is checked on its own (``record.bugs``) and the record's figures are the worst of them.

    Held-out inputs that sat near the backdoor point before and the patch moved away from it (*released*: they
    carried something the backdoor read as its trigger) do not count against locality: their moving is the patch
    working. On a noise-patch ResNet they were 5% of D (noise-like textures), and mean locality over all inputs
    stalled at 0.966 while the rest sat at 0.99. Inputs at the point that stayed there (the target class's own)
    count as any other, and so do they all in the trigger pull."""
    nan = float("nan")
    with torch.no_grad():
        shift = 0 if plan.centre is None else plan.centre
        bug_embeddings = patched(plan.x_b) - shift
        # x_b against where x_r sat before the patch: a patch that moves x_r onto x_b has not fixed the bug
        references = plan.original_reference if plan.bug_target is None else plan.bug_target
        similarities = cosine(bug_embeddings, references).tolist()
        # and x_r against where it was: the customer saw it classified right
        held = cosine(patched(plan.x_r) - shift, plan.original_reference)
        figures = [{"bug_similarity": value, "reference_similarity": kept, "generalizability": nan, "pull": nan,
                    "earlier": bug.earlier}
                   for value, kept, bug in zip(similarities, held.tolist(), plan.bugs, strict=True)]  # fmt: skip
        locality, released = nan, 0
        if plan.holdout_targets is not None:
            centre = None if plan.centre is None else plan.centre.cpu()
            clean = patched.embed(plan.holdout)
            neutral = {id(bug.trigger): _neutralisation(patched, bug.trigger, plan.holdout, clean, centre)
                       for bug in plan.bugs}  # fmt: skip
            left = torch.zeros(len(clean), dtype=torch.bool)
            for bug, figure in zip(plan.bugs, figures, strict=True):
                figure["generalizability"] = neutral[id(bug.trigger)]
                if bug.carriers is None:
                    continue
                point = bug.backdoor_point.cpu()
                left |= bug.carriers & (similarity(clean, point, centre) < bug.carrier_similarity)
                figure["pull"] = excess_pull(patched, bug.trigger, plan.holdout, clean, ~bug.carriers, point, centre)
            released = int(left.sum())
            locality = float(similarity(clean[~left], plan.holdout_targets[~left], centre).mean())
    goal_locality = config.goal_locality if plan.centre is None else config.goal_locality_centred
    for figure in figures:
        figure["fixed"] = _bug_fixed(figure, config, plan.holdout_targets is not None, goal_locality)
    worst = [min(f["bug_similarity"] for f in figures), min(f["generalizability"] for f in figures),
             max((f["pull"] for f in figures if f["pull"] == f["pull"]), default=nan)]  # fmt: skip
    met = all(figure["fixed"] for figure in figures) and (plan.holdout_targets is None or locality >= goal_locality)
    return EpochRecord(epoch, *losses, locality, worst[1], worst[2], worst[0], met, released, figures)


def _neutralisation(
    patched: Encoder, trigger: Trigger, holdout: Tensor | list[str], clean: Tensor, centre: Tensor | None
) -> float:
    """How little stamping ``trigger`` moves held-out embeddings (mean similarity to the clean ones), at the worst
    of its placements."""
    return min(
        float(similarity(patched.embed(placed.apply(holdout)), clean, centre).mean()) for placed in trigger.placements()
    )


def _check_widened(patched: Encoder, plan: _Plan, config: PatchConfig, record: EpochRecord) -> bool:
    """The final verdict's last check, on held-out inputs: each trigger's stamp widened past what training grew it
    (:meth:`ImageTrigger.widened`: more of ``x_b``'s pixels around the recovered mask) must not drag inputs toward
    the backdoor point either. A recovered mask that held 73% of a 9x9 trigger let a patch meet every goal while the
    deployed classifier still sent 28% of triggered inputs to the target: the patch had neutralised the part found
    and the backdoor answered the rest. A text trigger's is words shaped like its own (:meth:`TextTrigger.widened`):
    a patch of ``cf``'s row left any-word's siblings at 0.36, the whole-model patch at 0.08. Not an early-stopping
    goal: it judges the patch, it does not steer it. Writes ``widened_pull`` (and ``fixed``) into ``record.bugs``;
    returns whether every bug passes."""
    if plan.holdout_targets is None:
        return True
    centre = None if plan.centre is None else plan.centre.cpu()
    with torch.no_grad():
        clean = patched.embed(plan.holdout)
        for bug, figure in zip(plan.bugs, record.bugs, strict=True):
            if bug.carriers is None:
                continue
            wide = bug.trigger.widened()
            if wide is bug.trigger:  # nothing wider to check (fresh noise anywhere, a frequency pattern)
                continue
            figure["widened_pull"] = excess_pull(patched, wide, plan.holdout, clean, ~bug.carriers,
                                                 bug.backdoor_point.cpu(), centre)  # fmt: skip
            figure["fixed"] = figure["fixed"] and figure["widened_pull"] <= config.goal_pull
    return all(figure["fixed"] for figure in record.bugs)


def _bug_fixed(figure: dict[str, Any], config: PatchConfig, checked_on_holdout: bool, goal_locality: float) -> bool:
    """The bug's own goals: ``x_b`` where ``L_e`` aims, ``x_r`` where it was (when ``L_l`` holds it), and (measured
    on held-out inputs) its trigger neither moving embeddings nor dragging them toward the backdoor point (not
    measured for an earlier bug)."""
    if figure["bug_similarity"] < config.goal_effectiveness:
        return False
    if config.holds_reference and figure["reference_similarity"] < goal_locality:
        return False
    return not checked_on_holdout or (
        figure["generalizability"] >= config.goal_generalizability
        and (figure["earlier"] or figure["pull"] <= config.goal_pull)
    )
