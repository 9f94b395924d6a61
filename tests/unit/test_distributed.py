"""How several processes split the work: every row of a step exactly once, the single-process
order, filler rows only where a process would have none; the launch command and its refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftune.config import Config
from ftune.training.distributed import World
from ftune.training.sampling import IGNORED_LABEL, ShardedLengthBatches, WithFillers, step_pieces
from ftune.training.launch import launch_command, launch_problems


class Rows:
    def __init__(self, lengths):
        self.lengths = lengths

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, index):
        return {"input_ids": [1] * self.lengths[index], "labels": index % 2}


def _batches(rows, batch_size, accumulation, size, rank, epoch=0):
    sampler = ShardedLengthBatches(rows, batch_size, accumulation, World(rank=rank, size=size), seed=7)
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("count,batch_size,accumulation,size", [(37, 4, 1, 2), (41, 2, 3, 2), (33, 3, 1, 3),
                                                                 (9, 4, 1, 2)])
def test_each_step_holds_the_single_process_rows_once(count, batch_size, accumulation, size):
    from ftune.training.sampling import EpochSeededLengthGroupedSampler

    rows = Rows([5 + (i * 7) % 23 for i in range(count)])
    for epoch in (0, 1):
        per_rank = [_batches(rows, batch_size, accumulation, size, rank, epoch) for rank in range(size)]
        assert len({len(b) for b in per_rank}) == 1  # every process takes as many steps
        global_batch = batch_size * accumulation * size
        single = EpochSeededLengthGroupedSampler(global_batch, dataset=rows, model_input_name="input_ids")
        single.seed, single.epoch = 7, epoch
        order = list(single)
        steps = len(per_rank[0]) // accumulation
        assert steps == -(-count // global_batch)
        for step in range(steps):
            taken = [i for rank in range(size)
                     for i in sum(per_rank[rank][step * accumulation:(step + 1) * accumulation], []) if i < count]
            assert sorted(taken) == sorted(order[step * global_batch:(step + 1) * global_batch])
        fillers = [i for batches in per_rank for b in batches for i in b if i >= count]
        assert len(fillers) == max(0, accumulation * size - count % global_batch) if count % global_batch else not fillers
        assert all(b for batches in per_rank for b in batches)  # no process is ever handed an empty batch


def test_a_step_with_fewer_rows_than_pieces_leaves_pieces_empty_and_fillers_mask_labels():
    assert step_pieces([4, 5, 6], 4, 2) == [[4], [5], [6], []]
    assert step_pieces(list(range(8)), 2, 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    rows = WithFillers([{"input_ids": [1, 2], "labels": 1}, {"input_ids": [3], "labels": [3, -100]}])
    assert len(rows) == 2 and rows[0]["labels"] == 1
    assert rows[2]["labels"] == IGNORED_LABEL and rows[2]["input_ids"] == [1, 2]
    assert rows[3]["labels"] == [IGNORED_LABEL, IGNORED_LABEL]
    assert rows[1]["labels"] == [3, -100]  # the real row is untouched


def test_a_filler_preference_pair_has_no_completion_and_counts_for_nothing():
    import torch
    from datasets import Dataset
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from ftune.training.sampling import length_column
    from ftune.training.trainer import trained_pairs

    pairs = Dataset.from_list([{"prompt_ids": [1, 2], "chosen_ids": [3], "rejected_ids": [4, 5], "length": 9},
                               {"prompt_ids": [6], "chosen_ids": [7, 8], "rejected_ids": [9], "length": 4}])
    rows = WithFillers(pairs)
    assert rows[3]["chosen_ids"] == rows[3]["rejected_ids"] == [] and rows[3]["prompt_ids"] == [6]
    assert rows[1]["chosen_ids"] == [7, 8]  # the real pair is untouched
    collate = DataCollatorForPreference(pad_token_id=0)
    assert trained_pairs(collate([rows[0], rows[1]])) == 2 and trained_pairs(collate([rows[2]])) == 0
    assert torch.equal(collate([rows[2]])["completion_mask"], torch.zeros(2, 2, dtype=torch.long))
    # the lengths one process groups pairs by (their "length" column), not their token counts
    assert length_column(rows) == [9, 4] and length_column(Rows([3, 5])) is None


def test_launch_command_and_refusals():
    config = Config()
    config.train.processes = 2
    command = launch_command(config, Path("/tmp/c.yaml"), "cpu", 29555)
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    assert command[command.index("--num_processes") + 1] == "2"
    assert command[command.index("--main_process_port") + 1] == "29555"
    assert "--num_cpu_threads_per_process" in command
    assert command[-4:] == ["-m", "ftune", "train", "/tmp/c.yaml"]
    assert "--num_cpu_threads_per_process" not in launch_command(config, Path("c.yaml"), "cuda", 1)

    assert launch_problems(config, "cpu", cpu_cores=2, gpus=0) == []
    assert "more processes than the 1 CPU core(s)" in launch_problems(config, "cpu", 1, 0)[0]
    assert "more processes than the 1 GPU(s)" in launch_problems(config, "cuda", 8, 1)[0]


def test_a_resumed_launch_runs_ftune_train_resume_in_each_process(tmp_path, monkeypatch):
    config = Config()
    config.train.processes = 2
    assert launch_command(config, None, "cpu", 1, resume=Path("runs/r"))[-5:] == [
        "-m", "ftune", "train", "--resume", "runs/r"]

    from ftune.errors import FtuneError
    from ftune.training.checkpoints import resume_run

    checkpoint = tmp_path / "checkpoints" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    (tmp_path / "config.yaml").write_text("train:\n  processes: 1\n")
    (checkpoint / "ftune-state.json").write_text('{"step": 4, "processes": 2}')
    assert resume_run(tmp_path)[0].train.processes == 2  # as many as wrote the checkpoint (torchrun's count)
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(FtuneError, match="checkpoint-4 was written by 2 process\\(es\\); this launch has 3"):
        resume_run(tmp_path)


def test_shipped_strategy_files_are_what_ftune_generates(tmp_path):
    from ftune.training.strategies import STRATEGIES, settings_file_name, write_settings

    shipped = Path(__file__).resolve().parents[2] / "configs" / "distributed"
    for strategy in STRATEGIES:
        written = write_settings(strategy, tmp_path)
        if strategy == "ddp":
            assert written is None
            continue
        assert (shipped / settings_file_name(strategy)).read_text() == written.read_text(), strategy


def test_strategy_settings_reach_the_trainer_as_its_own_arguments():
    from transformers import TrainingArguments

    from ftune.training.strategies import strategy_settings, trainer_arguments

    assert trainer_arguments("ddp") == {}
    fsdp = TrainingArguments(output_dir="unused", use_cpu=True, **trainer_arguments("fsdp"))
    assert fsdp.fsdp and fsdp.fsdp_config["version"] == 2
    assert fsdp.fsdp_config["state_dict_type"] == "FULL_STATE_DICT"  # a whole model to evaluate and save
    zero3 = trainer_arguments("deepspeed-zero3")["deepspeed"]["zero_optimization"]
    assert zero3["stage"] == 3 and zero3["stage3_gather_16bit_weights_on_model_save"]
    assert strategy_settings("deepspeed-zero2")["zero_optimization"]["stage"] == 2


def test_strategies_that_cannot_run_here_are_refused(monkeypatch):
    from ftune.training import strategies
    from ftune.training.strategies import strategy_problems

    assert strategy_problems("ddp", "cpu", "lora") == []
    assert "on cpu use train.distributed=ddp" in strategy_problems("fsdp", "cpu", "lora")[0]
    assert "QLoRA base cannot be sharded" in " ".join(strategy_problems("fsdp", "cuda", "qlora"))
    assert not any("QLoRA" in p for p in strategy_problems("fsdp", "cuda", "lora"))
    monkeypatch.setattr(strategies.importlib.util, "find_spec", lambda name: None)
    assert "DeepSpeed is not installed (pip install deepspeed)" in strategy_problems("deepspeed-zero2", "cuda", "lora")[0]
    config = Config()
    config.train.processes, config.train.distributed = 2, "deepspeed-zero3"
    assert any("DeepSpeed" in p for p in launch_problems(config, "cuda", cpu_cores=16, gpus=2))
