import io
import tarfile

import pytest

from mudjacking.data import DataError
from mudjacking.data.text_sets import read_bbc_news, read_movie_review_snippets, split_texts

LINES = "1\t2.3\tA gripping film.\r\n2\t-0.6\tEffective but too tepid biopic\r\n3\t0\tNeutral.\r\n"


def _tar_bytes(name: str, payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def test_reads_the_snippets_from_the_nested_sdist(tmp_path):
    inner = _tar_bytes("hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt", LINES.encode())
    sdist = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    sdist.write_bytes(_tar_bytes("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz", inner))
    texts, labels = read_movie_review_snippets(sdist)
    assert texts == ["A gripping film.", "Effective but too tepid biopic"] and labels == [1, 0]


def test_wrong_archive_names_the_file(tmp_path):
    other = tmp_path / "other.tar.gz"
    other.write_bytes(_tar_bytes("README", b"x"))
    with pytest.raises(DataError, match="other.tar.gz: holds no hutto_ICWSM_2014.tar.gz"):
        read_movie_review_snippets(other)


def test_bbc_folders_and_split(tmp_path):
    for topic, count in (("tech", 3), ("sport", 2)):
        (tmp_path / topic).mkdir()
        for index in range(count):
            (tmp_path / topic / f"{index}.txt").write_text(f"{topic} story\n number {index}")
    texts, labels, names = read_bbc_news(tmp_path)
    assert names == ["sport", "tech"] and labels.count(1) == 3 and texts[0] == "sport story number 0"
    split = split_texts("bbc", texts, labels, names, test_fraction=0.4, seed=0)
    assert len(split.train_texts) == 3 and len(split.test_texts) == 2
    assert sorted(split.train_texts + split.test_texts) == sorted(texts)
