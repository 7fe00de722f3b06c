"""The annealing runtime (estimators.runtime): the loop over betas, interrupt-safe checkpoints."""

import pytest
import torch

from estimators.runtime import AnnealingCheckpoint, anneal


def _random_walk_step(generator):
    """A toy annealing step that draws from the generator and never writes its input."""

    def step(state, k):
        noise = torch.randn(4, generator=generator, dtype=torch.float64)
        return {"x": state["x"] + k * noise, "count": state["count"] + 1}

    return step


def _start():
    return {"x": torch.zeros(4, dtype=torch.float64), "count": torch.zeros((), dtype=torch.int64)}


def test_an_interrupted_loop_resumes_to_the_uninterrupted_result(tmp_path):
    whole_gen = torch.Generator().manual_seed(3)
    whole = anneal(_random_walk_step(whole_gen), _start(), 50, whole_gen)
    assert int(whole["count"]) == 49

    gen = torch.Generator().manual_seed(3)
    inner = _random_walk_step(gen)
    calls = {"n": 0}

    def interrupting(state, k):
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt
        return inner(state, k)

    saves = AnnealingCheckpoint(tmp_path / "run.safetensors", "toy", "key-1", every=1e9)
    with pytest.raises(KeyboardInterrupt):
        anneal(interrupting, _start(), 50, gen, checkpoint=saves)
    assert saves.exists()

    fresh = torch.Generator().manual_seed(999)  # the generator's state comes from the file
    state, first = saves.load(fresh)
    assert first == 20 and int(state["count"]) == 19
    resumed = anneal(_random_walk_step(fresh), state, 50, fresh, first=first, checkpoint=saves)
    assert torch.equal(resumed["x"], whole["x"]) and int(resumed["count"]) == 49
    assert saves.load(torch.Generator())[1] == 50  # saved again at the end


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    gen = torch.Generator().manual_seed(0)
    path = tmp_path / "run.safetensors"
    anneal(_random_walk_step(gen), _start(), 5, gen, checkpoint=AnnealingCheckpoint(path, "a", "k"))
    with pytest.raises(ValueError, match="another model"):
        AnnealingCheckpoint(path, "a", "other key").load(gen)
    with pytest.raises(ValueError, match="another model"):
        AnnealingCheckpoint(path, "b", "k").load(gen)
    with pytest.raises(ValueError, match="needs its generator"):
        anneal(
            _random_walk_step(gen),
            _start(),
            5,
            None,
            checkpoint=AnnealingCheckpoint(path, "a", "k"),
        )
