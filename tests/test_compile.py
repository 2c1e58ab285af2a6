"""AsymKPipeline.compile_transformer: warm-up, equal frames, and a failed compilation left eager."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asymk_talker import AsymKPipeline


def _render(pipe):
    audio = np.sin(np.linspace(0, 400, 16000)).astype(np.float32) * 0.3
    return pipe(image=np.full((32, 32, 3), 90, np.uint8), audio=audio, sample_rate=16000,
                generator=torch.Generator().manual_seed(0), output_type="np").frames


def test_compiled_transformer_renders_the_same_frames():
    pipe = AsymKPipeline.from_preset("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    eager = _render(pipe)
    calls = []
    original = pipe.transformer.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    pipe.transformer.forward = counting
    # backend="eager": dynamo traces the model (what the default inductor backend compiles) without a C++ build
    assert pipe.compile_transformer(backend="eager") is pipe
    assert calls, "the warm-up render ran the transformer"
    assert pipe.transformer._compiled_call_impl is not None
    np.testing.assert_allclose(_render(pipe), eager, atol=1e-5)


def test_failed_compilation_leaves_the_transformer_eager():
    pipe = AsymKPipeline.from_preset("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    eager = _render(pipe)

    def broken_backend(graph, example_inputs):
        raise OSError("no C++ compiler")

    with pytest.raises(RuntimeError, match="^compile: torch.compile failed"):
        pipe.compile_transformer(backend=broken_backend)
    assert pipe.transformer._compiled_call_impl is None
    np.testing.assert_array_equal(_render(pipe), eager)
