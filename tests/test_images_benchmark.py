"""The helpers of lesson 03: sample images, noise, PSNR, image rows; and the benchmark command."""

import math

import matplotlib.pyplot as plt
import pytest
import torch

from utils import course, images
from utils.instructor import benchmark


@pytest.mark.parametrize("name", list(images.SAMPLES))
def test_sample_images_load_as_small_grey_floats(name):
    img = images.load(name, size=32)
    assert img.shape == (32, 32) and img.dtype == torch.float32
    assert float(img.min()) >= 0 and float(img.max()) <= 1
    assert float(img.std()) > 0.05  # a picture, not a flat grey
    assert torch.equal(img, images.load(name, size=32))


def test_load_names_what_it_cannot_do():
    with pytest.raises(ValueError, match="unknown image 'lena'"):
        images.load("lena")
    with pytest.raises(ValueError, match="size must be between 4 and 256"):
        images.load("mri", size=300)


def test_downscaling_averages_blocks_of_pixels():
    big, small = images.load("mri", size=64), images.load("mri", size=32)
    blocks = big.reshape(32, 2, 32, 2).mean(dim=(1, 3))  # (32, 32): each 2 × 2 block averaged
    torch.testing.assert_close(small, blocks, atol=1e-5, rtol=0)


def test_noise_is_gaussian_fixed_by_its_seed_and_leaves_the_global_generator_alone():
    img = torch.zeros(200, 200)
    torch.manual_seed(5)
    expected_next = torch.rand(2)
    torch.manual_seed(5)
    noisy = images.add_noise(img, 0.1, seed=3)
    assert torch.equal(torch.rand(2), expected_next)
    assert torch.equal(noisy, images.add_noise(img, 0.1, seed=3))
    assert not torch.equal(noisy, images.add_noise(img, 0.1, seed=4))
    assert abs(float(noisy.std()) - 0.1) < 0.005 and abs(float(noisy.mean())) < 0.005


def test_psnr_in_decibels():
    clean = torch.zeros(10, 10)
    assert images.psnr(clean, clean + 0.1) == pytest.approx(20.0)  # mean squared error 0.01
    assert images.psnr(clean, clean + 0.01) == pytest.approx(40.0)
    assert images.psnr(clean, clean + 0.5, peak=0.5) == pytest.approx(0.0)
    assert images.psnr(clean, clean) == math.inf
    with pytest.raises(ValueError, match="images of one shape"):
        images.psnr(clean, torch.zeros(5, 5))


def test_show_draws_one_titled_picture_per_image():
    fig = images.show([torch.rand(8, 8), torch.rand(8, 6)], ["a", "b"], power=0.5)
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    assert all(not ax.get_xticks().size for ax in fig.axes)
    plt.close(fig)
    fig, axes = plt.subplots(1, 3)
    assert images.show([torch.rand(4, 4)], axes=axes[1:2]) is fig
    plt.close(fig)
    with pytest.raises(ValueError, match="1 titles for 2 images"):
        images.show([torch.rand(4, 4)] * 2, ["only one"])


def test_table_aligns_its_columns():
    table = benchmark.Table("title", ["image", "time (s)"], [["8 × 8", "0.001"], ["128 × 128", "0.250"]], ["a note"])
    lines = table.format().splitlines()
    assert lines[0] == "title" and lines[-1] == "a note"
    assert lines[2] == "| image     | time (s) |"
    assert lines[5] == "| 128 × 128 |    0.250 |"
    assert len({len(line) for line in lines[2:6]}) == 1


def test_measure_returns_the_median_of_the_timed_runs():
    calls = []
    seconds = benchmark.measure(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and seconds >= 0


def test_nlm_benchmark_prints_a_row_per_size(capsys):
    code = benchmark.main(
        ["nlm", "--sizes", "16", "24", "--repeats", "1", "--patch-radius", "1", "--search-radius", "2"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "3 × 3 patches, 5 × 5 search window" in out
    rows = [line for line in out.splitlines() if line.startswith("|") and "×" in line and "image" not in line]
    assert [row.split("|")[1].strip() for row in rows] == ["16 × 16", "24 × 24"]


def test_nlm_benchmark_times_the_notebook_it_is_given(capsys):
    """On the learner's copy, as handed out, it says the exercise is not written yet."""
    notebook = course.NOTEBOOKS / "03_non_local_means.ipynb"
    code = benchmark.main(["nlm", "--sizes", "16", "--repeats", "1", "--notebook", str(notebook)])
    assert code == 1
    assert "is not written yet" in capsys.readouterr().err
    assert benchmark.main(["nlm", "--notebook", "nowhere.ipynb"]) == 1
    assert "no notebook at nowhere.ipynb" in capsys.readouterr().err


def test_benchmarks_are_listed_and_unknown_ones_refused(capsys):
    assert benchmark.main(["--list"]) == 0
    assert "nlm" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        benchmark.main(["no-such-benchmark"])


def test_a_lesson_can_add_a_benchmark(capsys, monkeypatch):
    monkeypatch.setattr(benchmark, "BENCHMARKS", dict(benchmark.BENCHMARKS))

    @benchmark.benchmark("toy", "a toy", lambda parser: parser.add_argument("--n", type=int, default=2))
    def toy(args):
        return benchmark.Table(f"toy n={args.n}", ["n"], [[args.n]])

    assert benchmark.main(["toy", "--n", "5"]) == 0
    assert capsys.readouterr().out.startswith("toy n=5")
