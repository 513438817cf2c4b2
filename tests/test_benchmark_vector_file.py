"""``python -m benchmarks vectors``: the dump it writes is read whole in both of dumpdata's formats."""

from benchmarks import vector_file


def test_the_vectors_suite_reads_every_row_it_wrote_in_both_formats(capsys):
    figures = vector_file.run(images=40)
    assert figures["json_vectors"] == figures["jsonl_vectors"] == 40
    assert figures["json_peak_mb"] >= figures["json_setup_mb"] > 0
    assert "40 vectors kept" in capsys.readouterr().out
