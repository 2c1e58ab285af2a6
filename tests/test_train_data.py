"""train/data.py: latent/audio window alignment, GT kernels, the cache format, determinism, sharding."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from asymk_talker.asymk_core.audio import FrameAudioFeatures
from asymk_talker.asymk_core.synthetic.corpus import CorpusSpec
from asymk_talker.asymk_core.tre import encode_reference
from asymk_talker.asymk_core.vae import encode_video
from asymk_talker.train.data import (
    LatentClipDataset,
    ShardedBatchSampler,
    SyntheticClipDataset,
    build_latent_cache,
    chunk_slice,
    frame_audio_windows,
    gt_kernel,
    latent_audio_windows,
    latent_video_frames,
    make_dataloader,
    num_latents_for_frames,
    read_cache_manifest,
    video_tensor,
)

TAU, N = 2, 3
SPEC = CorpusSpec(identities=2, seconds=1.6, size=32, utterances_per_identity=2, heldout_identities=1)


@pytest.fixture(scope="module")
def tiny_models():
    from asymk_talker.asymk_core.model_folder import preset_components

    components, _ = preset_components("tiny", seed=0)
    return components


@pytest.fixture(scope="module")
def cache(tmp_path_factory, tiny_models):
    out = tmp_path_factory.mktemp("cache")
    entries = build_latent_cache(tiny_models, SPEC, out, reference_window=TAU + N, num_references=1, progress=False)
    return out, entries


def test_latent_video_frames_alignment():
    assert latent_video_frames(0) == (0, 1)
    for i in range(1, 6):
        start, stop = latent_video_frames(i)
        assert (start, stop - 1) == (4 * i - 3, 4 * i)
    assert num_latents_for_frames(1) == 1 and num_latents_for_frames(5) == 2 and num_latents_for_frames(8) == 2


def test_causal_vae_latent_i_covers_frames_up_to_4i(tiny_models):
    """Perturbing video frame 4i changes latent i; perturbing frame 4i + 1 does not (causal VAE)."""
    vae = tiny_models["vae"]
    video = torch.rand(1, 3, 13, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        base = encode_video(vae, video)
        for i in (1, 2):
            after = video.clone()
            after[:, :, 4 * i + 1] = -after[:, :, 4 * i + 1]
            moved = encode_video(vae, after)
            assert torch.allclose(moved[:, :, : i + 1], base[:, :, : i + 1], atol=1e-5)
            inside = video.clone()
            inside[:, :, 4 * i] = -inside[:, :, 4 * i]
            assert not torch.allclose(encode_video(vae, inside)[:, :, i], base[:, :, i], atol=1e-4)


def test_frame_audio_windows_match_frame_audio_features(tiny_models, speech):
    encoder = tiny_models["audio_encoder"]
    waveform = speech(1.3)
    from asymk_talker.asymk_core.audio import encode_audio

    features = encode_audio(encoder, waveform)
    for fps in (25.0, 30.0):
        reference = FrameAudioFeatures(encoder, waveform, fps, window=5)
        for start, count in ((0, 7), (9, 4), (28, 12)):
            assert torch.allclose(frame_audio_windows(features, fps, start, count, 5), reference.windows(start, count))


def test_latent_audio_windows_are_the_four_frames_of_each_latent():
    features = torch.randn(80, 1, 6)
    out = latent_audio_windows(features, 25.0, first_latent=3, num_latents=2, window=5)
    assert out.shape == (2, 4, 5, 1, 6)
    assert torch.equal(out[0], frame_audio_windows(features, 25.0, 9, 4, 5))  # latent 3 -> frames 9..12
    assert torch.equal(out[1], frame_audio_windows(features, 25.0, 13, 4, 5))  # latent 4 -> frames 13..16
    with pytest.raises(ValueError):
        latent_audio_windows(features, 25.0, first_latent=0, num_latents=1, window=5)


def test_cache_format(cache, tiny_models):
    root, entries = cache
    meta, manifest = read_cache_manifest(root)
    assert manifest == entries and len(entries) == len(SPEC.clips())
    assert meta["reference_window"] == TAU + N and meta["latent_channels"] == 4 and meta["temporal_factor"] == 4
    from safetensors.torch import load_file

    entry = entries[0]
    assert set(entry) >= {"path", "identity", "split", "num_frames", "fps"}
    tensors = load_file(str(root / entry["path"]))
    clip = SPEC.clips()[0]
    sample = clip.sample()
    frames = sample.frames[: entry["num_frames"]]
    assert entry["num_frames"] == 1 + 4 * (entry["num_latents"] - 1) <= len(sample.frames)
    with torch.no_grad():
        latents = encode_video(tiny_models["vae"], video_tensor(frames))[0]
    assert torch.allclose(tensors["latents"], latents, atol=1e-5)
    assert tensors["audio"].shape[1:] == (1, 80)  # raw 50 Hz log-mel features [T, L, D]
    assert tensors["reference_latents"].shape == (2, 4, TAU + N, 8, 8)  # portrait + 1 frame
    assert entry["reference_sources"][0] == "portrait"
    portrait = torch.from_numpy(sample.portrait).float().div(127.5).sub(1).permute(2, 0, 1)[None]
    expected = encode_reference(tiny_models["vae"], portrait, TAU + N)[0]
    assert torch.allclose(tensors["reference_latents"][0], expected, atol=1e-5)


def test_cache_build_is_resumable_and_checks_parameters(cache, tiny_models):
    root, entries = cache
    path = root / entries[0]["path"]
    before = path.stat().st_mtime_ns
    again = build_latent_cache(tiny_models, SPEC, root, reference_window=TAU + N, num_references=1, progress=False)
    assert again == entries and path.stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="other parameters"):
        build_latent_cache(tiny_models, SPEC, root, reference_window=TAU + N + 1, progress=False)


def test_colour_jitter_transforms_video_and_references_alike(tmp_path, tiny_models):
    """With ``colour_jitter=1`` every clip's frames and portrait get the same colour transform, so the
    cached latents are exactly those of the transformed clip and its transformed portrait."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from asymk_talker.asymk_core.synthetic.appearance import ColourTransform

    spec = CorpusSpec(identities=2, seconds=0.7, size=32, utterances_per_identity=1, heldout_identities=1,
                      variety="mixed")
    entries = build_latent_cache(tiny_models, spec, tmp_path, reference_window=TAU + N, num_references=1,
                                 colour_jitter=1.0, progress=False)
    for clip, entry in zip(spec.clips(), entries):
        with safe_open(str(tmp_path / entry["path"]), "pt") as handle:
            matrix, offset = json.loads(handle.metadata()["colour_transform"])
        transform = ColourTransform(np.asarray(matrix, np.float32), np.asarray(offset, np.float32))
        assert not np.allclose(transform.matrix, np.eye(3))
        sample = clip.sample()
        tensors = load_file(str(tmp_path / entry["path"]))
        frames = transform(sample.frames[: entry["num_frames"]])
        with torch.no_grad():
            latents = encode_video(tiny_models["vae"], video_tensor(frames))[0]
        assert torch.allclose(tensors["latents"], latents, atol=1e-5)
        portrait = torch.from_numpy(transform(sample.portrait)).float().div(127.5).sub(1).permute(2, 0, 1)[None]
        expected = encode_reference(tiny_models["vae"], portrait, TAU + N)[0]
        assert torch.allclose(tensors["reference_latents"][0], expected, atol=1e-5)
    assert [c.variety for c in spec.clips()] == ["classic", "wide"]


def test_sample_window_gt_kernel_and_audio(cache, tiny_models):
    root, entries = cache
    from safetensors.torch import load_file

    dataset = LatentClipDataset(root, TAU, N, num_chunks=1, split="train", seed=3)
    assert len(dataset) == sum(e["split"] == "train" for e in entries)
    clips = {f"{c.identity}/{c.utterance}": c for c in SPEC.clips()}
    for index in range(6):
        sample = dataset[index]
        entry = dataset.entries[sample["clip"]]
        start = sample["start"]
        assert 1 <= start and start + TAU + N <= entry["num_latents"]
        latents = load_file(str(root / entry["path"]))["latents"]
        assert torch.equal(sample["kernel_latents"], latents[:, start:start + TAU])  # GT kernel = latents before
        assert torch.equal(sample["target_latents"], latents[:, start + TAU:start + TAU + N])
        assert sample["reference_latents"].shape == (4, TAU + N, 8, 8)
        assert sample["audio_features"].shape == (N, 4, 5, 1, 80)
        # Audio of target latent i = windows of video frames 4i-3 .. 4i, exactly as at inference.
        clip = clips[entry["path"].split("/", 1)[1].rsplit(".", 1)[0]]
        audio = FrameAudioFeatures(tiny_models["audio_encoder"], clip.sample(render=False).audio, entry["fps"], 5)
        for j in range(N):
            i = start + TAU + j
            assert torch.allclose(sample["audio_features"][j], audio.windows(4 * i - 3, 4), atol=1e-6)
        assert sample["identity"] == dataset.identity_index[entry["identity"]]


def test_multi_chunk_gt_kernels(cache):
    root, _ = cache
    from safetensors.torch import load_file

    dataset = LatentClipDataset(root, TAU, 2, num_chunks=2, split="all", seed=0)
    sample = dataset[1]
    latents = load_file(str(root / dataset.entries[sample["clip"]]["path"]))["latents"]
    s = sample["start"]
    batch = {k: v.unsqueeze(0) for k, v in sample.items() if torch.is_tensor(v)}
    assert sample["target_latents"].shape[1] == 4 and sample["audio_features"].shape[0] == 4
    for k in range(2):
        kernel = gt_kernel(batch["kernel_latents"], batch["target_latents"], k, 2)[0]
        assert torch.equal(kernel, latents[:, s + 2 * k: s + 2 * k + TAU])  # the tau latents before chunk k
        chunk = chunk_slice(batch["target_latents"], k, 2)[0]
        assert torch.equal(chunk, latents[:, s + TAU + 2 * k: s + TAU + 2 * k + 2])
        assert chunk_slice(batch["audio_features"], k, 2, dim=1).shape == (1, 2, 4, 5, 1, 80)


def test_determinism_and_sharding(cache):
    root, _ = cache
    a = LatentClipDataset(root, TAU, N, split="all", seed=7)
    b = LatentClipDataset(root, TAU, N, split="all", seed=7)
    c = LatentClipDataset(root, TAU, N, split="all", seed=8)
    for index in (0, 3, 17):
        sa, sb = a[index], b[index]
        assert sa["clip"] == sb["clip"] and sa["start"] == sb["start"]
        assert torch.equal(sa["target_latents"], sb["target_latents"])
    assert [(a[i]["clip"], a[i]["start"]) for i in range(8)] != [(c[i]["clip"], c[i]["start"]) for i in range(8)]
    # every epoch visits every clip once
    assert sorted(a[i]["clip"] for i in range(len(a), 2 * len(a))) == list(range(len(a)))

    ranks = [ShardedBatchSampler(3, rank, 2) for rank in range(2)]
    for batch in range(4):
        got = ranks[0].batch_indices(batch) + ranks[1].batch_indices(batch)
        assert sorted(got) == list(range(6 * batch, 6 * batch + 6))  # disjoint, covering the global batch
    loader0 = iter(make_dataloader(a, 2, rank=0, world_size=2))
    loader1 = iter(make_dataloader(a, 2, rank=1, world_size=2))
    first0, first1 = next(loader0), next(loader1)
    assert first0["kernel_latents"].shape == (2, 4, TAU, 8, 8)
    assert not torch.equal(first0["target_latents"], first1["target_latents"])
    second0 = next(loader0)
    resumed = next(iter(make_dataloader(a, 2, rank=0, world_size=2, start_batch=1)))
    assert torch.equal(second0["target_latents"], resumed["target_latents"])
    assert torch.equal(second0["start"], resumed["start"])


def test_split_filter_and_errors(cache):
    root, entries = cache
    held = LatentClipDataset(root, TAU, N, split="heldout")
    assert all(e["split"].startswith("heldout") for e in held.entries)
    with pytest.raises(ValueError, match="latents"):
        LatentClipDataset(root, TAU, N, num_chunks=10, split="all")
    with pytest.raises(ValueError, match="reference_window"):
        LatentClipDataset(root, TAU + 1, N, split="all")
    portrait = LatentClipDataset(root, TAU, N, split="all", reference="portrait", in_memory=True)
    assert portrait[0]["reference_latents"].shape == (4, TAU + N, 8, 8)


def test_synthetic_clip_dataset(tiny_models):
    dataset = SyntheticClipDataset(tiny_models["vae"], tiny_models["audio_encoder"], TAU, N, num_chunks=2, size=32,
                                   epoch_size=4, seed=1)
    sample = dataset[0]
    assert sample["kernel_latents"].shape == (4, TAU, 8, 8)
    assert sample["target_latents"].shape == (4, 2 * N, 8, 8)
    assert sample["reference_latents"].shape == (4, TAU + N, 8, 8)
    assert sample["audio_features"].shape == (2 * N, 4, 5, 1, 80)
    again = dataset[0]
    assert torch.equal(sample["target_latents"], again["target_latents"])
    assert json.dumps(int(sample["identity"]))
