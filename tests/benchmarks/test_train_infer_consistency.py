"""The agent at evaluation time sees, and answers, exactly what training saw for the same state.

A collected trajectory is replayed in the env through `NavilaAgent`, with a model wrapper that records each
decision's inputs and answers the collected label (so the agent walks the expert's path). Decision by decision,
the agent's 8 frames must equal the sample's stored frames, its prompt the training encoder's prompt, and a
model's greedy answer from the agent's inputs (`generate_text`, the inference path) the answer the training code
generates for the sample (`action_eval.answer_items`, the held-out scoring path). A mismatch anywhere
(frame sampling, black pads, the history's step, prompt template, pixel preprocessing) makes held-out accuracy
measure a different task from the one the agent plays. Session 13 ran the same check on 4 val_seen trajectories
with the shipped model: 135 of 135 decisions identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from typer.testing import CliRunner

from benchmarks.cli import app


class ScriptedModel:
    """Records the (images, prompt) of every decision and answers the collected labels in order."""

    def __init__(self, conv_mode: str, answers: list[str]) -> None:
        self.conv_mode = conv_mode
        self.answers = list(answers)
        self.inputs: list[tuple[list[Any], str]] = []

    def generate_text(self, samples, max_new_tokens: int = 32) -> list[str]:
        self.inputs.extend(samples)
        return [self.answers.pop(0) for _ in samples]


def test_agent_inputs_and_answers_match_the_training_samples(tmp_path, monkeypatch):
    import vlm
    from agent.navila import NavilaAgent
    from envs.datasets.splits import load_split
    from envs.env import VLNCEEnv
    from vlm.train.action_eval import answer_items
    from vlm.train.dataset import EncoderConfig, SampleEncoder, TrajectoryDataset

    monkeypatch.setenv("NAVILA_AGENT_GEN_HOUSES", "1")
    monkeypatch.setenv("NAVILA_AGENT_GEN_EPISODES", "2")
    data = tmp_path / "collected"
    # At the env's resolution: `--frame-size` stores resized frames, which the agent (full-size frames) never sees.
    result = CliRunner().invoke(
        app,
        ["collect", "--split", "r2r_train", "--output", str(data), "--limit", "1"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output

    ds = TrajectoryDataset(data)
    assert len({sample["traj"] for sample in ds.samples}) == 1
    indices = sorted(range(len(ds)), key=lambda i: ds.samples[i]["t"])
    items = [ds[i] for i in indices]
    assert len(items) > 8, "the trajectory should be long enough to sample a real history"

    texts = [item["prompt"] for item in items] + [item["answer"] for item in items]
    tok = vlm.build_tokenizer(texts, vocab_size=400)
    torch.manual_seed(0)
    model = vlm.build_model(vlm.tiny_config(vocab_size=len(tok)), tok).eval()

    episode = {e.uid: e for e in load_split("r2r_train")}[ds.samples[indices[0]]["episode_uid"]]
    scripted = ScriptedModel(model.conv_mode, [item["answer"] for item in items])
    agent = NavilaAgent(scripted)
    env = VLNCEEnv(episodes=[episode])
    obs, _ = env.reset(options={"episode_id": episode.episode_id})
    agent.reset(episode)
    done = False
    while not done:
        obs, _, terminated, truncated, _ = env.step(agent.act(obs))
        done = terminated or truncated
    assert len(scripted.inputs) == len(items), "the agent made a different number of decisions"

    encoder = SampleEncoder(
        model.tokenizer, model.image_processor, EncoderConfig(conv_template=model.conv_mode)
    )
    for k, (item, (images, prompt)) in enumerate(zip(items, scripted.inputs, strict=True)):
        seen = np.stack([np.asarray(image.pixels) for image in images])
        np.testing.assert_array_equal(seen, item["frames"], err_msg=f"decision {k}: frames differ")
        assert prompt == encoder.prompt_text(item["prompt"]), f"decision {k}: prompt differs"

    training_path = answer_items(model, items, encoder, mode="generate")
    inference_path = model.generate_text(scripted.inputs)
    assert inference_path == training_path
    # A random model answers differently in different states, so equal lists compare real per-decision answers.
    assert len(set(inference_path)) > 1
