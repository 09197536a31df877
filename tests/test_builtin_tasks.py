"""The built-in real-text fine-tuning tasks (finetune/builtin_tasks.py)."""

import collections
import filecmp
import os

import pytest

from finetune import builtin_tasks
from finetune.tasks import glue_data


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("tasks"))
  assert builtin_tasks.main([f"--out={out}", "--seed=0"]) == 0
  return out


@pytest.mark.parametrize(
  "task, glue_task, columns", [("docstring_kind", "sst2", 1), ("next_sentence", "mrpc", 2)]
)
def test_tasks_read_as_glue_balanced_disjoint(tasks_dir, task, glue_task, columns):
  folder = os.path.join(tasks_dir, task)
  sets = {
    name: glue_data.read_glue_file(
      glue_data.TASKS[glue_task], os.path.join(folder, f"{name}.tsv"), True
    )
    for name in ("train", "dev")
  }
  assert len(sets["train"].ids) > 3000 and len(sets["dev"].ids) > 500
  for examples in sets.values():
    assert len(examples.texts) == columns
    counts = collections.Counter(examples.labels.tolist())
    assert counts[0] == counts[1] == len(examples.ids) // 2  # balanced
  train_text = {t for column in sets["train"].texts for t in column}
  assert not any(t in train_text for column in sets["dev"].texts for t in column)
  # Not trivial, not hopeless for a bag of words.
  assert 0.57 < builtin_tasks.tfidf_baseline(folder) < 0.8


def test_same_seed_same_files_other_seed_other_split(tasks_dir, tmp_path):
  builtin_tasks.write(str(tmp_path / "again"), seed=0)
  builtin_tasks.write(str(tmp_path / "other"), seed=1)
  for task in builtin_tasks.TASKS:
    for name in ("train.tsv", "dev.tsv"):
      mine = os.path.join(tasks_dir, task, name)
      assert filecmp.cmp(mine, tmp_path / "again" / task / name, shallow=False)
      assert not filecmp.cmp(mine, tmp_path / "other" / task / name, shallow=False)
