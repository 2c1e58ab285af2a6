"""The chunk-loop options a converted SoulX-FlashHead folder uses, on tiny components (offline, seconds).

Plan arithmetic (first kernel length, kernels re-encoded from decoded frames), the colour
correction, and a whole render through ``AsymKPipeline`` whose second kernel is the encoding of the
first chunk's last five shown frames.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flashhead_reference import converted_tiny_folder  # noqa: E402

from asymk_talker.asymk_core.colour import lab_to_srgb, match_colours, srgb_to_lab  # noqa: E402
from asymk_talker.asymk_core.kclg import ChunkPlan  # noqa: E402


def test_decoded_plan_frames_match_flashheads_windows():
    plan = ChunkPlan(61, 7, 2, 4, first_kernel_frames=1, kernel_source="decoded")
    assert plan.num_chunks == 2 and (plan.chunk_frames_for(0), plan.chunk_frames_for(1)) == (8, 7)
    assert plan.video_range(0) == (0, 33) and plan.video_range(1) == (33, 61)
    assert plan.window_video_start(1) == 28  # its kernel: the 5 frames before
    assert (plan.chunk_video_start(0), plan.chunk_video_start(1)) == (1, 33)
    assert ChunkPlan(62, 7, 2, 4, first_kernel_frames=1, kernel_source="decoded").num_chunks == 3
    assert ChunkPlan(20, 7, 2, 4, first_kernel_frames=1, kernel_source="decoded").video_range(0) == (0, 20)


def test_first_kernel_frames_with_latent_kernels_and_defaults_unchanged():
    plan = ChunkPlan(50, 3, 2, 4, first_kernel_frames=1)
    assert plan.chunk_frames_for(0) == 4 and plan.video_range(0) == (0, 16) and plan.video_range(1) == (16, 28)
    assert plan.num_chunks == 4 and plan.video_range(3) == (40, 50)
    default = ChunkPlan(50, 3, 2, 4)
    assert [default.video_range(k) for k in range(default.num_chunks)] == \
        [(12 * k, min(12 * k + 12, 50)) for k in range(5)]
    for bad in (dict(first_kernel_frames=0), dict(first_kernel_frames=5), dict(kernel_source="pixels")):
        with pytest.raises(ValueError, match="first_kernel_frames|kernel_source"):
            ChunkPlan(50, 3, 2, 4, **bad)
    with pytest.raises(ValueError, match="kernel_source"):
        default.window_video_start(1)


def test_colour_correction():
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(1000, 3, generator=g)
    assert (lab_to_srgb(srgb_to_lab(rgb)) - rgb).abs().max() < 1e-4
    white = srgb_to_lab(torch.ones(1, 3))[0]
    assert abs(white[0].item() - 100) < 1e-3 and white[1:].abs().max() < 1e-3
    portrait = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    frames = (portrait.unsqueeze(2).repeat(1, 1, 3, 1, 1) * 0.5 + 0.3).clamp(-1, 1)  # washed out, tinted
    corrected = match_colours(frames, portrait, 1.0)
    assert corrected.shape == frames.shape
    lab = srgb_to_lab(((corrected + 1) / 2).permute(0, 2, 3, 4, 1))
    target = srgb_to_lab(((portrait + 1) / 2).permute(0, 2, 3, 1))
    assert (lab.mean(dim=(2, 3))[0] - target.mean(dim=(1, 2))).abs().max() < 2.0  # Lab units (gamut clipping)
    assert (corrected - portrait.unsqueeze(2)).abs().mean() < (frames - portrait.unsqueeze(2)).abs().mean() / 3
    assert match_colours(frames, portrait, 0.0) is frames
    half = match_colours(frames, portrait, 0.5)
    assert torch.allclose(half, (frames + corrected) / 2, atol=1e-5)
    with pytest.raises(ValueError, match="strength"):
        match_colours(frames, portrait, 1.5)


@pytest.fixture(scope="module")
def converted_pipeline(tmp_path_factory):
    from asymk_talker.pipelines.pipeline_asymk import AsymKPipeline

    pipe = AsymKPipeline.from_pretrained(converted_tiny_folder(tmp_path_factory.mktemp("fh-loop")))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_render_reencodes_the_kernel_from_shown_frames(converted_pipeline, tmp_path):
    from asymk_talker.asymk_core.render_state import render_resumable
    from asymk_talker.asymk_core.vae import encode_video

    pipe = converted_pipeline
    portrait = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    speech = np.random.default_rng(1).standard_normal(int(16000 * 1.48)).astype(np.float32) * 0.1  # 37 frames
    session = pipe.prepare(portrait, speech, sample_rate=16000, height=32, width=32,
                           generator=torch.Generator().manual_seed(0))
    assert session.plan.num_chunks == 2 and session.audio.windows(0, 2).shape == (2, 5, 2, 8)
    stream = session.chunks()
    chunks = [next(stream)]
    state = session.state_after(chunks[0].chunk)  # what resuming at chunk 1 needs, taken right after chunk 0
    chunks += list(stream)
    assert state.kernel is chunks[1].chunk.kernel  # the very kernel the loop carried on
    assert [c.frames.shape[1] for c in chunks] == [33, 4] and chunks[1].start_frame == 33
    assert chunks[0].chunk.kernel.shape[2] == 1 and chunks[1].chunk.kernel.shape[2] == 2
    assert torch.equal(chunks[0].chunk.kernel, session.reference_latents[:, :, :1])
    shown = chunks[0].frames[0, -5:].permute(3, 0, 1, 2)[None] * 2 - 1  # last 5 frames, [-1, 1]
    expected = encode_video(pipe.vae, shown)
    assert (chunks[1].chunk.kernel - expected).abs().max() < 1e-4
    frames = pipe(portrait, speech, sample_rate=16000, height=32, width=32, output_type="np",
                  generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == (37, 32, 32, 3) and np.isfinite(frames).all()
    assert np.allclose(frames[:33], chunks[0].frames[0].numpy(), atol=1e-6)

    # Resumable: killed after chunk 0 and resumed, the frames are those of the uninterrupted render.
    from asymk_talker.asymk_core.video_io import read_video

    class Killed(Exception):
        pass

    def kill(index, *_):
        if index == 0:
            raise Killed

    def fresh():
        return pipe.prepare(portrait, speech, sample_rate=16000, height=32, width=32,
                            generator=torch.Generator().manual_seed(0))

    whole, resumed = tmp_path / "whole.mp4", tmp_path / "resumed.mp4"
    render_resumable(fresh(), whole, checkpoint_every=1)
    with pytest.raises(Killed):
        render_resumable(fresh(), resumed, checkpoint_every=1, on_chunk=kill)
    result = render_resumable(fresh(), resumed, checkpoint_every=1)
    assert result["resumed_from"] == 1 and result["num_frames"] == 37
    np.testing.assert_array_equal(read_video(resumed)[0], read_video(whole)[0])


def test_cli_generate_with_the_converted_folder(converted_pipeline, tmp_path):
    import PIL.Image
    import soundfile

    from asymk_talker.asymk_core.video_io import probe_video
    from asymk_talker.cli.main import main

    image, audio, output = tmp_path / "face.png", tmp_path / "speech.wav", tmp_path / "out.mp4"
    PIL.Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)).save(image)
    soundfile.write(str(audio), np.random.default_rng(1).standard_normal(int(16000 * 1.48)) * 0.1, 16000)
    folder = converted_pipeline.transformer._source_folder.parent
    code = main(["generate", "--model", str(folder), "--image", str(image), "--audio", str(audio),
                 "--output", str(output), "--height", "32", "--width", "32", "--quiet"])
    assert code == 0 and probe_video(output)["num_frames"] == 37
    code = main(["generate", "--model", str(folder), "--image", str(image), "--audio", str(audio),
                 "--output", str(tmp_path / "r.mp4"), "--height", "32", "--width", "32", "--quiet", "--resume"])
    assert code == 0 and probe_video(tmp_path / "r.mp4")["num_frames"] == 37


def test_live_session_with_the_flashhead_loop_equals_the_offline_render(converted_pipeline):
    """All the speech pushed at once, with audio context covering it: the live frames are the
    offline render's, window by window (33 frames, then 28 per chunk after a 5-frame kernel)."""
    pipe = converted_pipeline
    portrait = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    speech = np.random.default_rng(1).standard_normal(int(16000 * 1.48)).astype(np.float32) * 0.1  # 37 frames
    offline = pipe(portrait, speech, sample_rate=16000, height=32, width=32, output_type="np",
                   generator=torch.Generator().manual_seed(0)).frames
    with pipe.live(portrait, height=32, width=32, generator=torch.Generator().manual_seed(0), realtime=False,
                   context_frames=10**6) as live:
        live.push(speech, 16000)
        live.end()
        frames = list(live.frames())
    assert [f.index for f in frames] == list(range(37)) and all(f.speaking for f in frames)
    np.testing.assert_allclose(np.stack([f.image for f in frames]), offline, atol=1e-5)
    played = np.concatenate([f.audio for f in frames])
    np.testing.assert_array_equal(played, speech[: played.size])


def test_live_session_with_the_flashhead_loop_idles_and_speaks_again(converted_pipeline):
    import itertools

    pipe = converted_pipeline
    portrait = (np.random.default_rng(2).random((32, 32, 3)) * 255).astype(np.uint8)
    speech = np.random.default_rng(3).standard_normal(16000).astype(np.float32) * 0.1
    with pipe.live(portrait, height=32, width=32, generator=torch.Generator().manual_seed(0), realtime=False) as live:
        for start in range(0, 8000, 1234):  # half a second, in odd blocks
            live.push(speech[start:start + 1234], 16000)
        stream = live.frames()
        first = list(itertools.islice(stream, 33 + 28))  # chunk 0 shows its whole window, then 28 per chunk
        assert [f.index for f in first] == list(range(61))
        speaking = [f.speaking for f in first]
        spoken = [f.index for f in first if f.speaking]  # one utterance (13 frames), placed as late as it can be
        assert len(spoken) == 13 and spoken == list(range(spoken[0], spoken[0] + 13)) and spoken[-1] < 50
        assert not any(f.audio.any() for f in first if not f.speaking)
        live.push(speech[8000:], 16000)
        assert any(f.speaking for f in itertools.islice(stream, 2 * 28))  # it speaks again
        assert live.timeline.planned.keys() <= {(33 + 28 * k) for k in range(6)}  # old plans are released


def test_live_interrupt_takes_back_a_flashhead_window_made_but_not_yet_shown(converted_pipeline):
    """Real time: a speaking window made ahead of its presentation time and taken back by an
    interrupt is made again, idle, from its own (re-encoded) kernel and noise, so the video equals
    that of an interrupt which came before the window was planned."""
    import time

    pipe = converted_pipeline
    portrait = (np.random.default_rng(4).random((32, 32, 3)) * 255).astype(np.uint8)
    speech = np.random.default_rng(5).standard_normal(16000 * 4).astype(np.float32) * 0.1

    def render(after_made: bool) -> tuple[list, list]:
        with pipe.live(portrait, height=32, width=32, generator=torch.Generator().manual_seed(0)) as live:
            live.push(speech, 16000)
            stream = live.frames(timeout=60)
            frames, waiting = [next(stream)], []
            deadline = time.monotonic() + 30
            while after_made and not waiting and time.monotonic() < deadline:
                with live._lock:
                    waiting = [f.speaking for f in live._queue if f.index >= 33]
                time.sleep(0.002)
            live.interrupt()
            frames += [next(stream) for _ in range(33 + 2 * 28 - 1)]
        return frames, waiting

    taken_back, waiting = render(True)
    before, _ = render(False)
    assert waiting and all(waiting)
    assert [f.index for f in taken_back] == list(range(33 + 2 * 28))
    assert not any(f.speaking or f.audio.any() for f in taken_back[33:])
    for a, b in zip(taken_back, before):
        np.testing.assert_array_equal(a.image, b.image)
