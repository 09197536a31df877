"""Fine-tuning in Chinese: the CLUE readers (fields, label sets, CLUEWSC2020's span marks, CLUE's
submission file) and CMRC 2018 (windows and answers through WordPiece offsets; the official
character-level metric on hand-checked cases).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from zh_testdata import write_vocab

import albert_flax as af
from finetune import cmrc_metric, squad_metrics
from finetune.configs import clue as clue_config
from finetune.configs import cmrc as cmrc_config
from finetune.data import DataError
from finetune.tasks import get_task
from finetune.tasks.clue import TASKS, mark_wsc_spans
from finetune.tasks.glue_data import Split

TRAIN = Split("train", "train.json", "")


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  path = tmp_path_factory.mktemp("zh_vocab") / "vocab.txt"
  write_vocab(path)
  return af.WordPieceTokenizer(str(path))


def _write_lines(path, rows):
  path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def _clue(task, data_dir, tok, max_seq_length=24):
  config = clue_config.get_config()
  config.task, config.data_dir, config.max_seq_length = task, str(data_dir), max_seq_length
  return get_task(config, tok)


# ------------------------------------------------------------------------------- CLUE


def test_chinese_configs_resolve():
  from finetune.train import resolve_config

  config = clue_config.get_config()
  config.init_from, config.task = "albert_base_zh/", "tnews"
  resolved = resolve_config(config)
  assert (resolved.learning_rate, resolved.batch_size, resolved.max_seq_length) == (3e-5, 16, 128)
  assert (resolved.train_steps, resolved.warmup_steps) == (6670, 667)  # 2 epochs of 53,360
  config.task = "cluewsc2020"
  assert resolve_config(config).train_steps == 155
  config = cmrc_config.get_config()
  config.init_from = "albert_base_zh/"
  assert resolve_config(config).max_seq_length == 512


def test_clue_label_sets():
  assert len(TASKS["tnews"].labels) == 15 and "105" not in TASKS["tnews"].labels
  assert TASKS["tnews"].labels[:5] == ("100", "101", "102", "103", "104")
  assert TASKS["iflytek"].labels == tuple(str(i) for i in range(119))
  assert TASKS["cmnli"].labels == ("contradiction", "entailment", "neutral")
  assert TASKS["wsc"].labels == ("true", "false")


def test_afqmc_pairs_features_scoring_and_submission(tmp_path, tok):
  _write_lines(
    tmp_path / "train.json",
    [
      {"sentence1": "北京大学", "sentence2": "上海医院", "label": "0"},
      {"sentence1": "喜欢音乐", "sentence2": "喜欢音乐", "label": "1"},
    ],
  )
  _write_lines(tmp_path / "dev.json", [{"sentence1": "我们", "sentence2": "朋友", "label": "1"}])
  _write_lines(tmp_path / "test.json", [{"id": 7, "sentence1": "咖啡", "sentence2": "茶叶"}])
  task = _clue("afqmc", tmp_path, tok)
  assert task.model_overrides()["num_labels"] == 2
  train = task.train_features()
  assert train["labels"].tolist() == [0, 1]
  ids = train["input_ids"][0][: train["attention_mask"][0].sum()]
  assert tok.convert_ids_to_tokens(ids.tolist()) == (
    ["[CLS]", "北", "京", "大", "学", "[SEP]", "上", "海", "医", "院", "[SEP]"]
  )
  assert train["token_type_ids"][0][:11].tolist() == [0] * 6 + [1] * 5
  dev, test = task.eval_sets(final=True)
  assert (dev.name, dev.labeled, test.name, test.labeled) == ("dev", True, "test", False)
  metrics, _ = task.score(dev, {"logits": np.array([[0.0, 2.0]])})
  assert metrics == {"accuracy": 1.0}
  _, predicted = task.score(test, {"logits": np.array([[3.0, 1.0]])})
  (path,) = task.write_predictions(test, predicted, str(tmp_path))
  assert path.endswith("afqmc_predict.json")
  assert [json.loads(line) for line in open(path, encoding="utf-8")] == [{"id": 7, "label": "0"}]


def test_clue_fields_per_task(tmp_path, tok):
  cases = {
    "tnews": (
      [{"label": "102", "label_desc": "news_entertainment", "sentence": "电影", "keywords": ""}],
      [("电影",)],
      [2],
    ),
    "iflytek": ([{"label": "118", "label_des": "其他", "sentence": "游泳"}], [("游泳",)], [118]),
    "cmnli": (
      [
        {"sentence1": "天津", "sentence2": "城市", "label": "entailment"},
        {"sentence1": "重庆", "sentence2": "公园", "label": "-"},  # no consensus: dropped
        {"sentence1": "跑步", "sentence2": "休息", "label": "neutral"},
      ],
      [("天津", "城市"), ("跑步", "休息")],
      [1, 2],
    ),
    "ocnli": (
      [{"sentence1": "安静", "sentence2": "热闹", "label": "contradiction", "genre": "news"}],
      [("安静", "热闹")],
      [0],
    ),
    "csl": (
      [{"id": 1, "abst": "研究经济历史", "keyword": ["经济", "历史"], "label": "1"}],
      [("经济 历史", "研究经济历史")],
      [1],
    ),
  }
  for task_name, (rows, texts, labels) in cases.items():
    directory = tmp_path / task_name
    directory.mkdir()
    _write_lines(directory / "train.json", rows)
    task = _clue(task_name, directory, tok)
    examples = task._read(TRAIN, labeled=True)
    assert list(zip(*examples.texts)) == texts, task_name
    assert examples.labels.tolist() == labels, task_name


def test_cluewsc2020_marks_the_spans(tmp_path, tok):
  text = "小明把苹果放在桌子上，因为它很漂亮。"
  target = {"span1_text": "苹果", "span1_index": 3, "span2_text": "它", "span2_index": 13}
  assert mark_wsc_spans(text, target) == "小明把_苹果_放在桌子上，因为[它]很漂亮。"
  # The pronoun may come first: each span still gets its own marks.
  before = {"span1_text": "苹果", "span1_index": 12, "span2_text": "它", "span2_index": 0}
  assert (
    mark_wsc_spans("它把书放在桌子上，因为是苹果。", before) == "[它]把书放在桌子上，因为是_苹果_。"
  )
  _write_lines(
    tmp_path / "train.json",
    [{"target": target, "idx": 0, "label": "true", "text": text}],
  )
  examples = _clue("cluewsc2020", tmp_path, tok)._read(TRAIN, labeled=True)
  assert examples.texts == (["小明把_苹果_放在桌子上，因为[它]很漂亮。"],)
  wrong = dict(target, span2_index=12)
  _write_lines(tmp_path / "dev.json", [{"target": wrong, "idx": 0, "label": "true", "text": text}])
  with pytest.raises(DataError, match=r"dev\.json:1: span2_text '它' is not at span2_index 12"):
    _clue("wsc", tmp_path, tok).eval_sets(final=False)


def test_clue_errors_name_file_and_line(tmp_path, tok):
  _write_lines(
    tmp_path / "dev.json",
    [{"sentence": "电影", "label": "102"}, {"sentence": "音乐", "label": "105"}],
  )
  with pytest.raises(DataError, match=r"dev\.json:2: label '105' is not one of"):
    _clue("tnews", tmp_path, tok).eval_sets(final=False)
  _write_lines(tmp_path / "dev.json", [{"sentence1": "电影", "label": "0"}])
  with pytest.raises(DataError, match=r"dev\.json:1: no 'sentence2' field for afqmc"):
    _clue("afqmc", tmp_path, tok).eval_sets(final=False)
  with pytest.raises(ValueError, match="unknown CLUE task"):
    _clue("c3", tmp_path, tok)


# ------------------------------------------------------------------------- CMRC metric


@pytest.mark.parametrize(
  "answers, prediction, f1, em",
  [
    (["北京大学"], "北京大学", 1.0, 1.0),
    (["北京大学"], "北京", 2 / 3, 0.0),  # 2 common characters: P 1, R 1/2
    (["《红楼梦》"], "红楼梦", 1.0, 1.0),  # punctuation removed for both
    (["1990年"], "1990", 2 / 3, 0.0),  # segments 1990 | 年 (SQuAD's tokens: no overlap)
    (["中华人民共和国"], "中国", 2 * (1 / 2 * 1 / 7) / (1 / 2 + 1 / 7), 0.0),  # a contiguous run
    (["ALBERT model"], "albert", 2 / 3, 0.0),  # lower-cased; English split into words
    (["上海", "上海市"], "上海市", 1.0, 1.0),  # the best gold answer
    (["北京"], "", 0.0, 0.0),
  ],
)
def test_cmrc_metric_hand_checked(answers, prediction, f1, em):
  assert cmrc_metric.f1_score(answers, prediction) == pytest.approx(f1)
  assert cmrc_metric.exact_match(answers, prediction) == em


def test_cmrc_metric_differs_from_squads_and_averages():
  assert cmrc_metric.mixed_segmentation("在1990年，Hello World！") == (
    ["在", "1990", "年", "，", "hello", "world", "！"]
  )
  assert cmrc_metric.mixed_segmentation("3.14米", remove_punctuation=True) == ["3.14", "米"]
  assert squad_metrics.f1_v1("1990", "1990年") == 0.0  # one "word" to SQuAD
  scores = cmrc_metric.evaluate({"a": ["北京大学"], "b": ["上海"]}, {"a": "北京"})  # b unanswered
  assert scores["f1"] == pytest.approx(100 * (2 / 3) / 2)
  assert scores["em"] == 0.0
  assert scores["average"] == pytest.approx((scores["f1"] + scores["em"]) / 2)


# -------------------------------------------------------------------------- CMRC task


def test_cmrc_windows_answers_and_scores(tmp_path, tok):
  context = "「北京大学」，albert，「喜欢音乐」。「上海医院」，「美丽公园」。"
  answer = "喜欢音乐"
  start = context.index(answer)
  data = {
    "version": "v1.0",
    "data": [
      {
        "id": "DEV_0",
        "paragraphs": [
          {
            "id": "DEV_0",
            "context": context,
            "qas": [
              {
                "id": "DEV_0_QUERY_0",
                "question": "我们喜欢什么",
                "answers": [{"text": answer, "answer_start": start}] * 3,  # dev: 3 annotators
              }
            ],
          }
        ],
      }
    ],
  }
  for name in ("cmrc2018_train.json", "dev.json"):
    (tmp_path / name).write_text(json.dumps(data, ensure_ascii=False), "utf-8")
  config = cmrc_config.get_config()
  config.data_dir, config.max_seq_length, config.doc_stride = str(tmp_path), 24, 4
  task = get_task(config, tok)
  assert task.best_metric == "dev/average"
  train = task.train_features()
  assert len(train["input_ids"]) > 1  # the context needs several windows
  answered = np.nonzero(train["start_positions"])[0]
  assert len(answered)
  for f in answered:  # where the answer lies in a window, its tokens are the answer's characters
    s, e = train["start_positions"][f], train["end_positions"][f]
    assert "".join(tok.convert_ids_to_tokens(train["input_ids"][f][s : e + 1].tolist())) == answer
  (dev,) = task.eval_sets(final=False)
  # Logits that point at the answer's tokens, in every window that holds them.
  spans = dev.features["char_spans"]
  start_logits = np.where(spans[..., 0] == start, 10.0, 0.0)
  end_logits = np.where(spans[..., 1] == start + len(answer), 10.0, 0.0)
  metrics, predicted = task.score(dev, {"start_logits": start_logits, "end_logits": end_logits})
  assert predicted.final == {"DEV_0_QUERY_0": answer}
  assert metrics == {"f1": 100.0, "em": 100.0, "average": 100.0}
