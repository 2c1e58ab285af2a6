"""AsymKPipeline end to end on the tiny preset: shapes, frame counts, determinism, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from asymk_talker import AsymKPipeline


@pytest.fixture(scope="module")
def tiny_pipe():
    pipe = AsymKPipeline.from_preset("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, image, audio, seed=0, **kwargs):
    kwargs.setdefault("output_type", "np")
    kwargs.setdefault("generator", torch.Generator().manual_seed(seed))
    return pipe(image=image, audio=audio, sample_rate=16000, **kwargs)


@pytest.mark.parametrize("seconds", [0.5, 1.37, 2.0])
def test_frame_count_follows_audio_duration(tiny_pipe, portrait_array, speech, seconds):
    frames = run(tiny_pipe, portrait_array, speech(seconds)).frames
    assert frames.shape == (round(seconds * 25), 32, 32, 3)
    assert frames.dtype == np.float32 and 0.0 <= frames.min() and frames.max() <= 1.0


def test_fps_changes_frame_count(tiny_pipe, portrait_array, speech):
    frames = run(tiny_pipe, portrait_array, speech(1.1), fps=30).frames
    assert frames.shape[0] == round(1.1 * 30)


def test_same_seed_same_frames_and_different_seed_differs(tiny_pipe, portrait_array, speech):
    audio = speech(0.9)
    first = run(tiny_pipe, portrait_array, audio, seed=3).frames
    again = run(tiny_pipe, portrait_array, audio, seed=3).frames
    other = run(tiny_pipe, portrait_array, audio, seed=4).frames
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_output_types(tiny_pipe, portrait_array, speech):
    audio = speech(0.6)
    pil = run(tiny_pipe, portrait_array, audio, output_type="pil").frames
    pt = run(tiny_pipe, portrait_array, audio, output_type="pt").frames
    latent = run(tiny_pipe, portrait_array, audio, output_type="latent").frames
    frames = round(0.6 * 25)
    assert len(pil) == frames and pil[0].size == (32, 32) and pil[0].mode == "RGB"
    assert pt.shape == (frames, 3, 32, 32)
    assert latent.ndim == 5 and latent.shape[:2] == (1, 4) and latent.shape[2] * 4 >= frames


def test_stream_matches_call(tiny_pipe, portrait_array, speech):
    audio = speech(1.3)
    whole = run(tiny_pipe, portrait_array, audio).frames
    chunks = list(tiny_pipe.stream(portrait_array, audio, sample_rate=16000, generator=torch.Generator().manual_seed(0)))
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].start_frame == 0 and chunks[-1].num_frames == whole.shape[0]
    assert np.array_equal(np.concatenate([c.frames for c in chunks]), whole)


def test_save_load_round_trip_gives_identical_frames(tiny_pipe, portrait_array, speech, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "model")
    index = json.loads((tmp_path / "model" / "model_index.json").read_text())
    assert index["transformer"] == ["asymk_talker", "AsymKTransformer"]
    assert index["_class_name"] == "AsymKPipeline"
    assert list((tmp_path / "model" / "transformer").glob("*.safetensors"))
    loaded = AsymKPipeline.from_pretrained(tmp_path / "model")
    loaded.set_progress_bar_config(disable=True)
    audio = speech(0.8)
    assert np.array_equal(run(tiny_pipe, portrait_array, audio).frames, run(loaded, portrait_array, audio).frames)


def test_teacher_guidance_calls_transformer_twice_per_step(tiny_pipe, portrait_array, speech):
    calls = []
    handle = tiny_pipe.transformer.register_forward_hook(lambda module, args, output: calls.append(1))
    try:
        run(tiny_pipe, portrait_array, speech(0.4), num_inference_steps=3, guidance_scale=2.0, sampler="teacher")
        guided = len(calls)
        calls.clear()
        run(tiny_pipe, portrait_array, speech(0.4), num_inference_steps=3, sampler="distilled")
        distilled = len(calls)
    finally:
        handle.remove()
    chunks = 1  # 10 frames -> 3 latent frames -> one chunk of 3
    assert guided == 2 * 3 * chunks and distilled == 3 * chunks


def test_callback_on_step_end_sees_every_step_and_can_replace_latents(tiny_pipe, portrait_array, speech):
    seen = []

    def callback(pipe, step, step_in_chunk, kwargs):
        seen.append((step, kwargs["latents"].shape))
        return {"latents": torch.zeros_like(kwargs["latents"])}

    out = run(tiny_pipe, portrait_array, speech(0.4), num_inference_steps=2, sampler="distilled",
              callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents"], output_type="latent")
    assert [s for s, _ in seen] == [0, 1]
    assert torch.count_nonzero(out.frames) == 0


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(num_inference_steps=0), "num_inference_steps"),
        (dict(num_inference_steps=2.5), "num_inference_steps"),
        (dict(height=30), "height"),
        (dict(fps=0), "fps"),
        (dict(guidance_scale=-1.0), "guidance_scale"),
        (dict(output_type="gif"), "output_type"),
        (dict(chunk_frames=0), "chunk_frames"),
        (dict(sampler="euler"), "sampler"),
        (dict(generator=123), "generator"),
    ],
)
def test_bad_arguments_are_named(tiny_pipe, portrait_array, speech, kwargs, argument):
    with pytest.raises((ValueError, TypeError), match=f"`{argument}`"):
        run(tiny_pipe, portrait_array, speech(0.3), **kwargs)


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="pretrained_model_name_or_path"):
        AsymKPipeline.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="model_index.json"):
        AsymKPipeline.from_pretrained(tmp_path / "empty")


def test_corrupt_weights_and_mismatched_components_are_clear_errors(tiny_pipe, tmp_path):
    folder = tmp_path / "model"
    tiny_pipe.save_pretrained(folder)
    weights = next((folder / "transformer").glob("*.safetensors"))
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="transformer"):
        AsymKPipeline.from_pretrained(folder)
    synthetic = AsymKPipeline.from_preset("synthetic")
    tiny_pipe.save_pretrained(folder)
    synthetic.vae.save_pretrained(folder / "vae")
    with pytest.raises(ValueError, match="latent channels"):
        AsymKPipeline.from_pretrained(folder)


def test_hub_id_goes_through_snapshot_download_offline(tmp_path, monkeypatch):
    import huggingface_hub

    calls = {}

    def fake_snapshot_download(repo_id, **kwargs):
        calls.update(repo_id=repo_id, **kwargs)
        AsymKPipeline.from_preset("tiny").save_pretrained(tmp_path / "snapshot")
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    pipe = AsymKPipeline.from_pretrained("someone/asymk-tiny", local_files_only=True)
    assert calls["repo_id"] == "someone/asymk-tiny" and calls["local_files_only"] is True
    assert pipe.transformer.config.latent_channels == 4


# ------------------------------------------------------------------------------ render session
def test_session_resumed_from_a_saved_state_gives_the_uninterrupted_chunks(tiny_pipe, portrait_array, speech):
    def session():
        return tiny_pipe.prepare(portrait_array, speech(1.2), sample_rate=16000, num_inference_steps=2,
                                 sampler="distilled", generator=torch.Generator().manual_seed(5))

    whole = [chunk.frames for chunk in session().chunks()]
    first = session()
    chunks = first.chunks()
    head = [next(chunks), next(chunks)]
    state = first.state_after(head[-1].chunk)
    rest = [chunk.frames for chunk in session().chunks(start_chunk=2, state=state)]
    assert len(whole) == first.plan.num_chunks > 2
    for expected, got in zip(whole, [c.frames for c in head] + rest):
        assert torch.equal(expected, got)


def test_one_resolver_takes_the_model_defaults_for_any_sampler(tiny_pipe):
    config = tiny_pipe.config
    for sampler in ("teacher", "distilled"):
        settings = tiny_pipe.resolve_settings(sampler=sampler)
        assert settings.num_inference_steps == config.num_inference_steps  # the model folder's steps
        assert (settings.height, settings.chunk_frames, settings.sampler) == (config.height, config.chunk_frames, sampler)
    with pytest.raises(ValueError, match="`sampler`"):
        tiny_pipe.resolve_settings(sampler="euler")


@pytest.mark.parametrize("sampler", ["teacher", "distilled"])
def test_one_pipeline_called_from_threads_gives_the_frames_of_calls_made_one_at_a_time(tiny_pipe, portrait_array,
                                                                                        speech, sampler):
    """Three threads share one pipeline, each with its own seed and audio; every result is bit-exact
    the result of the same call made alone. The threads switch every microsecond and after every
    denoising step, so shared scheduler or VAE-cache state would mix them."""
    import sys
    import threading
    import time

    calls = [dict(seed=seed, audio=speech(seconds)) for seed, seconds in ((1, 0.5), (2, 0.7), (3, 0.6))]
    options = dict(sampler=sampler, num_inference_steps=3, chunk_frames=1, guidance_scale=2.0,
                   callback_on_step_end=lambda pipe, step, chunk_step, kwargs: time.sleep(0.001) or {})
    alone = [run(tiny_pipe, portrait_array, call["audio"], call["seed"], **options).frames for call in calls]
    start, results, failures = threading.Barrier(len(calls)), [None] * len(calls), []

    def render(index):
        try:
            start.wait()
            results[index] = run(tiny_pipe, portrait_array, calls[index]["audio"], calls[index]["seed"], **options).frames
        except Exception as error:  # reported below, with the others' results
            failures.append(repr(error))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=render, args=(index,)) for index in range(len(calls))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert not failures, failures
    for got, expected in zip(results, alone):
        assert got.shape == expected.shape and np.array_equal(got, expected)
