"""AKD, Asymmetric Kernel Distillation: the few-step student's rollout and its distillation losses.

Stage 2 of training (``train/akd.py`` runs it). A few-step student (initialised from the teacher)
generates several chunks in a row with the KCLG loop (:func:`asymk_core.kclg.kclg_chunks`, the
same loop as inference). Its output for each chunk is scored by distribution matching (DMD):

* the frozen **teacher** (multi-step flow model, trained with ground-truth kernels) predicts
  ``x_0`` from the noised student output, conditioned on a kernel chosen by the *kernel mode*;
* a trainable **critic** (the "fake" score, initialised from the teacher) predicts ``x_0``
  conditioned on the kernel the student actually used;
* the generator gradient is ``(fake - real) / mean|x - real|`` and the loss
  ``0.5 * ||x - sg(x - grad)||^2``; the critic is trained by flow matching on the detached
  student outputs with the student's kernels.

Kernel modes (:data:`KERNEL_MODES`, the method's ablation):

============== ======================== ===================== ====================
mode           student rolls out from   teacher scores with   critic scores with
============== ======================== ===================== ====================
asymmetric     its own kernels          ground-truth kernels  the student's kernels
teacher-forcing ground-truth kernels    ground-truth kernels  the student's (= GT)
self-forcing   its own kernels          the student's kernels the student's kernels
============== ======================== ===================== ====================

``asymmetric`` is the method: training matches inference (the student conditions on what it
generated), while the teacher's anchor never drifts (it always sees the true past).

Gradients: the rollout runs without gradient, except the *exit step* of every trained chunk
(random per chunk unless given), which is recomputed with gradient in one batched call. The kernel
handed to the next chunk is always detached, so no gradient crosses a chunk boundary. The exit
step's ``x_0`` is both the chunk's output and the source of the next chunk's kernel.

Flow-matching algebra (noising, ``x_0 = x_sigma - sigma v``): :mod:`.flow_matching`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .flow_matching import add_noise, x0_from_velocity
from .kclg import kclg_chunks
from .sampling import ChunkConditions, guided_velocity, predict_velocity, sample_chunk_distilled
from .training_losses import FlowLossOutput, flow_matching_loss

KERNEL_MODES = ("asymmetric", "teacher-forcing", "self-forcing")


# ----------------------------------------------------------------------------------- kernel wiring
@dataclass(frozen=True)
class KernelWiring:
    """Which kernel each network is conditioned on: ``"student"`` (the student's own generated
    kernels) or ``"gt"`` (ground truth). ``student`` is what the rollout itself conditions on."""

    student: str
    teacher: str
    critic: str = "student"


def kernel_wiring(kernel_mode: str) -> KernelWiring:
    """The :class:`KernelWiring` of a kernel mode (see the module docstring's table)."""
    if kernel_mode == "asymmetric":
        return KernelWiring(student="student", teacher="gt")
    if kernel_mode == "teacher-forcing":
        return KernelWiring(student="gt", teacher="gt")
    if kernel_mode == "self-forcing":
        return KernelWiring(student="student", teacher="student")
    raise ValueError(f"unknown kernel_mode {kernel_mode!r}; use one of {KERNEL_MODES}")


# ----------------------------------------------------------------------------------- batch helpers
def gt_chunk_kernel(kernel_latents: torch.Tensor, target_latents: torch.Tensor, chunk_index: int,
                    chunk_frames: int) -> torch.Tensor:
    """Ground-truth kernel of chunk ``chunk_index``: the last ``tau`` latents before it in
    ``[kernel_latents | target_latents]`` (chunk 0 -> ``kernel_latents``). Same rule as
    ``train.data.gt_kernel``; kept here so the method does not import the training package."""
    tau = kernel_latents.shape[2]
    start = chunk_index * chunk_frames
    if start == 0:
        return kernel_latents
    window = torch.cat([kernel_latents, target_latents[:, :, :start]], dim=2)
    return window[:, :, -tau:]


def chunk_audio(audio_features: torch.Tensor | None, chunk_index: int, chunk_frames: int) -> torch.Tensor | None:
    """Audio of one chunk from a batch's ``[B, K * n, r, W, L, D]`` features."""
    if audio_features is None:
        return None
    return audio_features.narrow(1, chunk_index * chunk_frames, chunk_frames)


@dataclass
class AKDBatch:
    """A training batch on the device: ``kernel_latents`` ``[B, C, tau, h, w]`` (GT kernel of chunk 0),
    ``target_latents`` ``[B, C, K n, h, w]``, ``reference_latents`` ``[B, C, tau + n, h, w]``,
    ``audio_features`` ``[B, K n, r, W, L, D]``."""

    kernel_latents: torch.Tensor
    target_latents: torch.Tensor
    reference_latents: torch.Tensor
    audio_features: torch.Tensor | None

    @classmethod
    def from_dict(cls, batch: dict, device=None, dtype=torch.float32) -> "AKDBatch":
        def move(x):
            return None if x is None else x.to(device=device, dtype=dtype)

        return cls(move(batch["kernel_latents"]), move(batch["target_latents"]), move(batch["reference_latents"]),
                   move(batch.get("audio_features")))

    @property
    def kernel_frames(self) -> int:
        return self.kernel_latents.shape[2]

    def gt_kernel(self, chunk_index: int, chunk_frames: int) -> torch.Tensor:
        return gt_chunk_kernel(self.kernel_latents, self.target_latents, chunk_index, chunk_frames)

    def conditions(self, kernel: torch.Tensor, chunk_index: int, chunk_frames: int) -> ChunkConditions:
        return ChunkConditions(kernel=kernel, reference_latents=self.reference_latents,
                               audio_features=chunk_audio(self.audio_features, chunk_index, chunk_frames))


# ----------------------------------------------------------------------------------------- rollout
@dataclass
class RolloutChunk:
    """One chunk of a student rollout.

    ``output``: the student's ``x_0`` ``[B, C, n, h, w]`` at the exit step (carries gradient when the
    rollout was made with ``grad=True`` and this chunk is trained); ``student_kernel``: the kernel
    the student was conditioned on (detached); ``gt_kernel``: the ground-truth kernel of the chunk;
    ``conditions``: the student's :class:`ChunkConditions`; ``exit_step``: the step whose ``x_0``
    was returned.
    """

    index: int
    output: torch.Tensor
    student_kernel: torch.Tensor
    gt_kernel: torch.Tensor
    conditions: ChunkConditions
    exit_step: int
    target: torch.Tensor | None = None


def sample_exit_steps(num_chunks: int, num_steps: int, generator: torch.Generator | None) -> list[int]:
    """A uniformly random exit step in ``0 .. num_steps - 1`` for every chunk."""
    return [int(s) for s in torch.randint(0, num_steps, (num_chunks,), generator=generator)]


def _fresh_noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator).to(device=like.device, dtype=like.dtype)


def student_rollout(
    student,
    batch: AKDBatch | dict,
    num_chunks: int,
    sigmas: Sequence[float],
    kernel_mode: str = "asymmetric",
    generator: torch.Generator | None = None,
    exit_step: int | Sequence[int] | None = None,
    *,
    chunk_frames: int | None = None,
    grad: bool = False,
    grad_chunks: Sequence[int] | None = None,
    grad_student=None,
    initial_kernel: torch.Tensor | None = None,
) -> list[RolloutChunk]:
    """Roll the few-step student out over ``num_chunks`` chunks with :func:`kclg_chunks`.

    ``kernel_mode``: ``asymmetric``/``self-forcing`` condition chunk ``k`` on the student's own
    output for chunk ``k - 1`` (exactly like inference); ``teacher-forcing`` on the ground-truth
    kernel. ``sigmas``: the distilled schedule (:func:`asymk_core.sampling.shifted_sigmas`).
    ``exit_step``: one int for all chunks, one per chunk, or ``None`` (random per chunk from
    ``generator``). All sampling noise comes from ``generator`` (CPU generator; tensors are moved).

    With ``grad=True`` the exit step of each chunk in ``grad_chunks`` (default: all) is recomputed
    with gradient, batched over chunks into one call of ``grad_student`` (default ``student``; pass
    the DDP/FSDP-wrapped module here and the plain one as ``student``). Everything else, including
    the kernels passed on, carries no gradient. ``initial_kernel``: the student's kernel for chunk 0
    instead of the ground truth (e.g. :func:`asymk_core.training_losses.drift_kernels` of it); the
    ground-truth kernels the teacher scores with are unchanged. Returns one :class:`RolloutChunk` per chunk.
    """
    if not isinstance(batch, AKDBatch):
        batch = AKDBatch.from_dict(batch, device=next(student.parameters()).device)
    wiring = kernel_wiring(kernel_mode)
    sigmas = [float(s) for s in sigmas]
    total = batch.target_latents.shape[2]
    # The TRE reference spans one [kernel | chunk] window.
    chunk_frames = int(chunk_frames or batch.reference_latents.shape[2] - batch.kernel_frames)
    if chunk_frames * num_chunks > total:
        raise ValueError(f"the batch has {total} target latents, fewer than {num_chunks} chunks x {chunk_frames}")
    if exit_step is None:
        exits = sample_exit_steps(num_chunks, len(sigmas), generator)
    elif isinstance(exit_step, int):
        exits = [exit_step] * num_chunks
    else:
        exits = [int(e) for e in exit_step]
    if len(exits) != num_chunks or not all(0 <= e < len(sigmas) for e in exits):
        raise ValueError(f"exit_step must be in 0..{len(sigmas) - 1} for each of {num_chunks} chunks, got {exits}")
    trained = set(range(num_chunks) if grad_chunks is None else grad_chunks) if grad else set()

    shape = (batch.target_latents.shape[0], batch.target_latents.shape[1], chunk_frames,
             *batch.target_latents.shape[3:])
    records: list[RolloutChunk] = []
    exit_inputs: dict[int, torch.Tensor] = {}

    def denoise_chunk(index: int, own_kernel: torch.Tensor) -> torch.Tensor:
        gt = batch.gt_kernel(index, chunk_frames)
        kernel = (own_kernel if wiring.student == "student" else gt).detach()
        conditions = batch.conditions(kernel, index, chunk_frames)
        noise = _fresh_noise(batch.target_latents.new_empty(shape), generator)
        last = exits[index]
        with torch.no_grad():
            if last == 0:
                noisy = noise
            else:
                previous = sample_chunk_distilled(student, noise, conditions, sigmas, generator, exit_step=last - 1)
                sigma = sigmas[last]
                noisy = add_noise(previous, _fresh_noise(previous, generator), sigma)
            output = sample_chunk_distilled(student, noisy, conditions, sigmas[last:], generator, exit_step=0)
        exit_inputs[index] = noisy
        records.append(RolloutChunk(index=index, output=output, student_kernel=kernel, gt_kernel=gt.detach(),
                                    conditions=conditions, exit_step=last,
                                    target=batch.target_latents.narrow(2, index * chunk_frames, chunk_frames)))
        return output.detach()

    start = batch.kernel_latents if initial_kernel is None or wiring.student != "student" else initial_kernel
    for _ in kclg_chunks(denoise_chunk, start.detach(), num_chunks, batch.kernel_frames):
        pass

    if trained:
        chosen = [r for r in records if r.index in trained]
        noisy = torch.cat([exit_inputs[r.index] for r in chosen])
        sigma = torch.cat([torch.full((shape[0],), sigmas[r.exit_step], device=noisy.device) for r in chosen])
        conditions = concat_conditions([r.conditions for r in chosen])
        with torch.enable_grad():
            velocity = predict_velocity(grad_student or student, noisy, sigma, conditions)
            outputs = x0_from_velocity(noisy, velocity, sigma)
        for r, out in zip(chosen, outputs.split(shape[0])):
            r.output = out
    return records


def concat_conditions(items: Sequence[ChunkConditions]) -> ChunkConditions:
    """Concatenate chunk conditions along the batch (several chunks scored in one call)."""
    audio = [c.audio_features for c in items]
    return ChunkConditions(
        kernel=torch.cat([c.kernel for c in items]),
        reference_latents=torch.cat([c.reference_latents for c in items]),
        audio_features=None if any(a is None for a in audio) else torch.cat(audio),
    )


def scoring_conditions(chunks: Sequence[RolloutChunk], who: str, kernel_mode: str) -> ChunkConditions:
    """The batched conditions ``teacher`` or ``critic`` scores a rollout with, per the kernel mode."""
    wiring = kernel_wiring(kernel_mode)
    source = getattr(wiring, who)
    kernels = [(c.gt_kernel if source == "gt" else c.student_kernel) for c in chunks]
    return concat_conditions([ChunkConditions(kernel=k, reference_latents=c.conditions.reference_latents,
                                              audio_features=c.conditions.audio_features)
                              for k, c in zip(kernels, chunks)])


# ------------------------------------------------------------------------------------------ losses
def predict_x0(transformer, noisy: torch.Tensor, sigma: torch.Tensor, conditions: ChunkConditions,
               guidance_scale: float = 1.0) -> torch.Tensor:
    """``x_0 = x_sigma - sigma v`` from a (optionally audio-guided) velocity; ``sigma`` ``[B]``."""
    velocity = guided_velocity(transformer, noisy, sigma, conditions, float(guidance_scale))
    return x0_from_velocity(noisy, velocity, sigma)


@dataclass
class DMDOutput:
    """Generator loss and diagnostics. ``teacher_kernel``/``critic_kernel``: the kernels (batched
    over chunks) the teacher and the critic were given; ``sigma`` ``[B K]``."""

    loss: torch.Tensor
    grad_norm: torch.Tensor
    real_x0: torch.Tensor
    fake_x0: torch.Tensor
    sigma: torch.Tensor
    teacher_kernel: torch.Tensor
    critic_kernel: torch.Tensor
    extras: dict = field(default_factory=dict)


def dmd_generator_loss(
    chunks: Sequence[RolloutChunk],
    teacher,
    critic,
    kernel_mode: str,
    sigma: torch.Tensor,
    noise: torch.Tensor,
    guidance_scale: float = 1.0,
    eps: float = 1e-6,
) -> DMDOutput:
    """Distribution-matching loss on the student outputs of ``chunks`` (concatenated over chunks).

    ``sigma`` ``[B K]`` and ``noise`` (like the concatenated outputs) noise the student output:
    ``x_t = (1 - sigma) x + sigma noise``. ``real`` = teacher ``x_0`` (audio CFG with
    ``guidance_scale``), ``fake`` = critic ``x_0``, each with the kernels :func:`kernel_wiring`
    assigns; ``grad = (fake - real) / mean|x - real|`` per sample (no gradient);
    ``loss = 0.5 * mean((x - sg(x - grad))^2)``.
    """
    x = torch.cat([c.output for c in chunks])
    teacher_conditions = scoring_conditions(chunks, "teacher", kernel_mode)
    critic_conditions = scoring_conditions(chunks, "critic", kernel_mode)
    with torch.no_grad():
        noisy = add_noise(x.detach(), noise.to(x.dtype), sigma)
        real = predict_x0(teacher, noisy, sigma, teacher_conditions, guidance_scale).float()
        fake = predict_x0(critic, noisy, sigma, critic_conditions).float()
        normaliser = (x.detach().float() - real).abs().flatten(1).mean(1).clamp_min(eps).view(-1, 1, 1, 1, 1)
        grad = torch.nan_to_num((fake - real) / normaliser)
        target = (x.detach().float() - grad)
    loss = 0.5 * F.mse_loss(x.float(), target, reduction="mean")
    return DMDOutput(loss=loss, grad_norm=grad.flatten(1).norm(dim=1).mean(), real_x0=real, fake_x0=fake,
                     sigma=sigma, teacher_kernel=teacher_conditions.kernel, critic_kernel=critic_conditions.kernel)


def critic_flow_loss(chunks: Sequence[RolloutChunk], critic, kernel_mode: str, sigma: torch.Tensor,
                     noise: torch.Tensor) -> FlowLossOutput:
    """Flow matching of the critic on the detached student outputs, conditioned like the critic is
    in :func:`dmd_generator_loss` (the student's kernels)."""
    clean = torch.cat([c.output for c in chunks]).detach()
    conditions = scoring_conditions(chunks, "critic", kernel_mode)
    return flow_matching_loss(critic, clean, conditions, sigma, noise.to(clean.dtype))


# ----------------------------------------------------------------------------------- ODE warm-up
@torch.no_grad()
def teacher_ode_trajectory(teacher, noise: torch.Tensor, conditions: ChunkConditions, sigmas: Sequence[float],
                           substeps: int = 4, guidance_scale: float = 1.0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Deterministic Euler ODE of the teacher from ``noise`` (at ``sigmas[0]``) to 0, through every
    level of the student schedule ``sigmas``, with ``substeps`` Euler steps between consecutive levels.

    Returns (the states at each student level, the final clean ``x_0``).
    """
    levels = [float(s) for s in sigmas] + [0.0]
    latents, states = noise, []
    for start, stop in zip(levels[:-1], levels[1:]):
        states.append(latents)
        grid = torch.linspace(start, stop, substeps + 1).tolist()
        for a, b in zip(grid[:-1], grid[1:]):
            velocity = guided_velocity(teacher, latents, a, conditions, float(guidance_scale))
            latents = latents + (b - a) * velocity.to(latents.dtype)
    return states, latents


def ode_regression_loss(student, teacher, batch: AKDBatch | dict, sigmas: Sequence[float], chunk_index: int,
                        chunk_frames: int, generator: torch.Generator | None = None, substeps: int = 4,
                        guidance_scale: float = 1.0, grad_student=None) -> torch.Tensor:
    """Warm-up: the student predicts the teacher's ODE endpoint from a random point of the teacher's
    trajectory at a student noise level, with ground-truth kernels (chunk ``chunk_index``)."""
    if not isinstance(batch, AKDBatch):
        batch = AKDBatch.from_dict(batch, device=next(student.parameters()).device)
    conditions = batch.conditions(batch.gt_kernel(chunk_index, chunk_frames), chunk_index, chunk_frames)
    target_shape = batch.target_latents.narrow(2, chunk_index * chunk_frames, chunk_frames)
    noise = _fresh_noise(target_shape, generator)
    states, clean = teacher_ode_trajectory(teacher, noise, conditions, sigmas, substeps, guidance_scale)
    size = noise.shape[0]
    pick = torch.randint(0, len(states), (size,), generator=generator)
    stacked = torch.stack(states)  # [S, B, ...]
    noisy = stacked[pick.to(stacked.device), torch.arange(size, device=stacked.device)]
    sigma = torch.tensor([float(sigmas[int(i)]) for i in pick], device=noisy.device)
    velocity = predict_velocity(grad_student or student, noisy, sigma, conditions)
    prediction = x0_from_velocity(noisy, velocity, sigma)
    return F.mse_loss(prediction.float(), clean.float())
