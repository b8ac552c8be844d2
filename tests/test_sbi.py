"""flowdsl.sbi: the simulators, the sbibm wheel reader, C2ST, the closed-form posteriors, NPE with a
conditional flow, the sbi adapter and the ``benchmarks/sbi_npe.py --quick`` path."""

import bz2
import importlib.util
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import flowdsl
from flowdsl.errors import FlowDSLError
from flowdsl.sbi import reference
from flowdsl.sbi.c2st import c2st
from flowdsl.sbi.gaussian import gaussian_kl, linear_gaussian_posterior, mc_kl, task_posterior
from flowdsl.sbi.npe import Standardizer, npe, train_npe
from flowdsl.sbi.sbi_adapter import flowdsl_density_estimator, sbi_available
from flowdsl.sbi.tasks import get_task

ROOT = Path(__file__).parents[1]
TINY = """flow tiny {
    input theta: vector[2]
    condition x: vector[2]
    coupling affine(mask=half, net=mlp([16]))
    permute(reverse)
    coupling affine(mask=half, net=mlp([16]))
}"""


def _benchmark():
    spec = importlib.util.spec_from_file_location("sbi_benchmark", ROOT / "benchmarks" / "sbi_npe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- simulators -----------------------------------------------------------------------------------

def test_gaussian_linear_prior_and_noise_have_variance_one_tenth():
    task = get_task("gaussian_linear")
    theta, x = task.simulate_pairs(20000, seed=1)
    assert theta.shape == x.shape == (20000, 10) and theta.dtype == torch.float32
    assert abs(float(theta.mean())) < 0.01 and abs(float(theta.var()) - 0.1) < 0.003
    assert abs(float((x - theta).var()) - 0.1) < 0.003
    assert abs(float(np.corrcoef(theta[:, 0], theta[:, 1])[0, 1])) < 0.03


def test_two_moons_prior_is_the_box_and_the_moon_has_radius_one_tenth():
    task = get_task("two_moons")
    theta, x = task.simulate_pairs(20000, seed=2)
    assert theta.shape == x.shape == (20000, 2)
    assert bool(task.in_support(theta).all()) and float(theta.abs().max()) > 0.99
    assert abs(float(theta.mean())) < 0.02 and abs(float(theta.var()) - 1 / 3) < 0.01
    x0 = task.simulate(torch.zeros(20000, 2), torch.Generator().manual_seed(3))  # theta = 0: the bare moon
    r = torch.sqrt((x0[:, 0] - 0.25) ** 2 + x0[:, 1] ** 2)
    assert abs(float(r.mean()) - 0.1) < 0.001 and abs(float(r.std()) - 0.01) < 0.001
    assert abs(float(x0[:, 0].mean()) - (0.25 + 0.1 * 2 / math.pi)) < 0.002  # E cos(a) = 2/pi
    assert bool((x0[:, 0] >= 0.25 - 0.05).all())  # a in (-pi/2, pi/2): the right half of the circle
    # the shift is (-|theta1 + theta2| / sqrt 2, (theta2 - theta1) / sqrt 2): symmetric under theta -> -theta
    t = torch.tensor([[0.3, 0.5]])
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    a, b = task.simulate(t, g1), task.simulate(-t, g2)
    assert torch.allclose(a[:, 0], b[:, 0]) and torch.allclose(a[:, 1] + b[:, 1], 2 * a[:, 1] - 2 * (0.2 / 2 ** 0.5))
    assert not bool(task.in_support(torch.tensor([[1.2, 0.0]])).any())


def test_timeseries_is_linear_in_theta_with_unit_noise():
    task = get_task("timeseries")
    theta, x = task.simulate_pairs(5000, seed=5)
    assert theta.shape == (5000, 3) and x.shape == (5000, 100)
    residual = x - theta @ task.design.T
    assert abs(float(residual.var()) - 1.0) < 0.02 and abs(float(residual.mean())) < 0.01
    k_theta, k_x = task.observation(3)
    again = task.observation(3)
    assert k_x.shape == (100,) and torch.equal(k_x, again[1]) and torch.equal(k_theta, again[0])
    with pytest.raises(FlowDSLError, match="observation 11"):
        task.observation(11)


def test_simulations_are_reproducible_by_seed_and_unknown_tasks_are_named():
    task = get_task("two_moons")
    assert torch.equal(task.simulate_pairs(10, seed=7)[1], task.simulate_pairs(10, seed=7)[1])
    assert not torch.equal(task.simulate_pairs(10, seed=7)[1], task.simulate_pairs(10, seed=8)[1])
    with pytest.raises(FlowDSLError, match="unknown task 'slcp'"):
        get_task("slcp")


# -- the wheel reader -----------------------------------------------------------------------------

def _wheel(path: Path, task="two_moons", observations=10, n=50, dim=2, broken=None):
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as z:
        for k in range(1, observations + 1):
            base = f"sbibm/tasks/{task}/files/num_observation_{k}/"
            head_x = ",".join(f"data_{i + 1}" for i in range(dim))
            head_t = ",".join(f"parameter_{i + 1}" for i in range(dim))
            z.writestr(base + "observation.csv", f"{head_x}\n" + ",".join(str(k + i / 10) for i in range(dim)) + "\n")
            z.writestr(base + "true_parameters.csv", f"{head_t}\n" + ",".join(["0.5"] * dim) + "\n")
            rows = "\n".join(",".join(f"{v:.6f}" for v in row) for row in rng.normal(size=(n, dim)) + k)
            member = base + "reference_posterior_samples.csv.bz2"
            z.writestr(member, b"garbage" if broken == k else bz2.compress(f"{head_t}\n{rows}\n".encode()))
            z.writestr(base + "observation_seed.csv", "observation_seed\n1000011\n")
    return path


def test_reader_reads_the_real_layout_from_a_synthetic_wheel(tmp_path):
    wheel = _wheel(tmp_path / reference.WHEEL)
    refs = reference.load_all("two_moons", wheel)
    assert [r.num_observation for r in refs] == list(range(1, 11))
    assert refs[3].observation.tolist() == [4.0, 4.1] and refs[3].true_parameters.tolist() == [0.5, 0.5]
    assert refs[3].samples.shape == (50, 2) and abs(refs[3].samples.mean() - 4) < 0.5


def test_reader_finds_the_wheel_in_the_cache_and_says_how_to_get_it_when_absent(tmp_path, monkeypatch):
    monkeypatch.delenv("FLOWDSL_SBIBM_WHEEL", raising=False)
    monkeypatch.setenv("FLOWDSL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FlowDSLError) as err:
        reference.find_wheel()
    text = str(err.value)
    assert "pip download --no-deps sbibm==1.1.0" in text and str(tmp_path / "cache" / "wheels") in text
    assert "Traceback" not in text and text.splitlines()[0].startswith("data: error: ")
    (tmp_path / "cache" / "wheels").mkdir(parents=True)
    wheel = _wheel(tmp_path / "cache" / "wheels" / reference.WHEEL)
    assert reference.find_wheel() == wheel
    assert reference.load_reference("two_moons", 2).observation.tolist() == [2.0, 2.1]
    monkeypatch.setenv("FLOWDSL_SBIBM_WHEEL", str(tmp_path / "nowhere.whl"))
    with pytest.raises(FlowDSLError, match="FLOWDSL_SBIBM_WHEEL=.*no such file"):
        reference.find_wheel()


def test_reader_refuses_a_missing_task_a_bad_observation_and_a_damaged_member(tmp_path):
    wheel = _wheel(tmp_path / reference.WHEEL, broken=4)
    with pytest.raises(FlowDSLError, match="the wheel has no sbibm/tasks/slcp/"):
        reference.load_reference("slcp", 1, wheel)
    with pytest.raises(FlowDSLError, match="observation 11 does not exist"):
        reference.load_reference("two_moons", 11, wheel)
    with pytest.raises(FlowDSLError, match="cannot read the sbibm wheel"):
        reference.load_reference("two_moons", 4, wheel)
    (tmp_path / "not.whl").write_bytes(b"not a zip")
    with pytest.raises(FlowDSLError, match="cannot read the sbibm wheel"):
        reference.load_reference("two_moons", 1, tmp_path / "not.whl")


_REAL = reference.wheel_dir() / reference.WHEEL


@pytest.mark.skipif(not _REAL.is_file(), reason=f"the real sbibm wheel is not at {_REAL} "
                    "(pip download --no-deps sbibm==1.1.0 -d that folder)")
def test_the_real_wheel_agrees_with_the_simulators_and_the_closed_form():
    gl = reference.load_all("gaussian_linear", _REAL)
    task = get_task("gaussian_linear")
    for ref in gl:
        assert ref.samples.shape == (10000, 10) and ref.observation.shape == (10,)
        post = task_posterior(task, torch.tensor(ref.observation))
        assert np.abs(ref.samples.mean(0) - post.mean.numpy()).max() < 5 * math.sqrt(0.05 / 10000)
        assert np.abs(ref.samples.var(0) - 0.05).max() < 0.005
    for ref in reference.load_all("two_moons", _REAL):  # every reference sample explains x_o with r ~ N(0.1, 0.01)
        th, x = ref.samples, ref.observation
        c = math.sqrt(0.5)
        u = x[0] + np.abs(c * th[:, 0] + c * th[:, 1]) - 0.25
        v = x[1] - (c * th[:, 1] - c * th[:, 0])
        r = np.sqrt(u ** 2 + v ** 2)
        assert ref.samples.shape == (10000, 2) and (u >= 0).all() and (np.abs(th) <= 1).all()
        # (r is N(0.1, 0.01) cut by the prior's box: an observation near its edge shifts it a little)
        assert abs(r.mean() - 0.1) < 0.003 and abs(r.std() - 0.01) < 0.002


# -- C2ST -----------------------------------------------------------------------------------------

def test_c2st_is_one_half_for_one_distribution_and_one_for_separated_ones():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 2)), rng.normal(size=(300, 2))
    same = c2st(a, b, max_iter=300)
    assert 0.4 < same < 0.6
    assert same == c2st(a, b, max_iter=300)  # seeded: deterministic
    assert c2st(a, b + np.array([8.0, 0])) > 0.97
    assert 0.7 < c2st(a, 3 * b) < 1.0  # same mean, three times the spread: clearly told apart
    with pytest.raises(ValueError, match="same D"):
        c2st(a, b[:, :1])


def test_c2st_z_scores_with_the_reference_samples():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + 0.3
    # an affine change of units of both sets leaves the z-scored test unchanged
    assert c2st(a, b, max_iter=300) == pytest.approx(c2st(1000 * a + 5, 1000 * b + 5, max_iter=300), abs=1e-9)


# -- closed-form posteriors and KL ----------------------------------------------------------------

def test_gaussian_linear_posterior_is_x_over_two_with_variance_one_twentieth():
    task = get_task("gaussian_linear")
    x = torch.linspace(-1, 1, 10)
    post = task_posterior(task, x)
    assert torch.allclose(post.mean, x.double() / 2, atol=1e-12)
    assert torch.allclose(post.covariance_matrix, 0.05 * torch.eye(10, dtype=torch.float64), atol=1e-12)


def test_linear_gaussian_posterior_matches_a_brute_force_grid():
    # 1-d theta, 3 observations of theta * a + noise: the grid posterior's mean and variance
    prior_mean, prior_cov = torch.tensor([0.3]), torch.tensor([[2.0]])
    a, s2, x = torch.tensor([[1.0], [2.0], [-1.0]]), 0.5, torch.tensor([0.7, 1.1, -0.2])
    post = linear_gaussian_posterior(prior_mean, prior_cov, a, s2, x)
    g = torch.linspace(-6, 6, 200001, dtype=torch.float64)
    logp = -(g - 0.3) ** 2 / 4 - ((x.double()[None] - g[:, None] * a.double().T) ** 2).sum(1) / (2 * s2)
    w = torch.softmax(logp, 0)
    mean = (w * g).sum()
    var = (w * (g - mean) ** 2).sum()
    assert float(post.mean[0]) == pytest.approx(float(mean), abs=1e-6)
    assert float(post.covariance_matrix[0, 0]) == pytest.approx(float(var), abs=1e-6)


def test_timeseries_posterior_concentrates_on_the_truth():
    task = get_task("timeseries")
    for k in (1, 2):
        truth, x = task.observation(k)
        post = task_posterior(task, x)
        sd = post.covariance_matrix.diagonal().sqrt()
        assert bool(((post.mean - truth.double()).abs() < 5 * sd).all()) and float(sd.max()) < 0.25


def test_monte_carlo_kl_matches_the_gaussian_formula():
    p = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64),
                                               covariance_matrix=torch.eye(2, dtype=torch.float64))
    q = torch.distributions.MultivariateNormal(torch.tensor([0.5, 0.0], dtype=torch.float64),
                                               covariance_matrix=1.5 * torch.eye(2, dtype=torch.float64))
    exact = float(torch.distributions.kl_divergence(p, q))
    kl, se = mc_kl(p, q.log_prob, n=20000)
    assert abs(kl - exact) < 4 * se + 1e-3 and se < 0.01
    assert gaussian_kl(p.sample((20000,)), q.sample((20000,))) == pytest.approx(exact, abs=0.03)


# -- NPE ------------------------------------------------------------------------------------------

def test_standardizer_round_trips_and_reports_its_log_jacobian():
    v = torch.randn(100, 3) * torch.tensor([1.0, 2.0, 4.0]) + 3
    s = Standardizer.fit(v)
    assert torch.allclose(s.undo(s(v)), v, atol=1e-5)
    assert s.log_scale == pytest.approx(float(v.std(0).log().sum()))


def test_tiny_npe_lowers_the_loss_and_its_posterior_is_normalised_and_in_the_prior():
    torch.manual_seed(0)
    task = get_task("two_moons")
    post = npe(flowdsl.compile_source(TINY), task, 400, max_epochs=25, patience=25, seed=1)
    history = post.report.history
    assert history[-1]["valid"] < history[0]["valid"] - 0.1 and post.report.best_epoch >= 2
    assert post.report.train_size == 360 and post.report.valid_size == 40
    x_o = torch.tensor([0.0, 0.1])
    # log_prob is a density in theta's own units (the z-scoring's Jacobian included): it integrates to 1
    g = torch.linspace(-6, 6, 301)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    mass = float(post.log_prob(grid, x_o).exp().sum()) * float(g[1] - g[0]) ** 2
    assert mass == pytest.approx(1.0, abs=0.03)
    samples = post.sample(500, x_o)
    assert samples.shape == (500, 2) and bool(task.in_support(samples).all()) and 0 < post.acceptance <= 1


def test_training_refuses_mismatched_pairs():
    with pytest.raises(FlowDSLError, match="one N"):
        train_npe(flowdsl.compile_source(TINY), torch.zeros(10, 2), torch.zeros(9, 2))


def test_the_example_specs_compile_with_their_conditions():
    shapes = {"two_moons": (2, 2), "gaussian_linear": (10, 10), "timeseries": (3, 100)}
    for name, (d, k) in shapes.items():
        flow = flowdsl.compile_file(ROOT / "examples" / "sbi" / f"{name}.flow")
        assert tuple(flow.input_shape) == (d,) and tuple(flow.context_shape) == (k,)
        lp = flow.log_prob(torch.randn(4, d), context=torch.randn(4, k))
        assert lp.shape == (4,) and bool(torch.isfinite(lp).all())


def test_the_embedding_net_trains_with_the_flow():
    torch.manual_seed(0)
    flow = flowdsl.compile_file(ROOT / "examples" / "sbi" / "timeseries.flow")
    embed = [p for n, p in flow.named_parameters() if "embed" in n]
    assert embed, "the embed net's parameters belong to the flow"
    before = [p.detach().clone() for p in embed]
    train_npe(flow, *get_task("timeseries").simulate_pairs(300, seed=0), max_epochs=2, patience=5)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, embed))


# -- the benchmark and the sbi adapter ------------------------------------------------------------

def test_quick_benchmark_writes_its_table(tmp_path):
    bench = _benchmark()
    md = tmp_path / "sbi.md"
    md.write_text("# SBI\n\nbefore\n")
    assert bench.main(["--quick", "--methods", "flowdsl", "--write", str(md), "--out", str(tmp_path / "t.md")]) == 0
    text = md.read_text()
    assert text.startswith("# SBI\n\nbefore\n") and bench.BEGIN in text and bench.END in text
    for task in ("two_moons", "gaussian_linear", "timeseries"):
        assert f"| {task} | 200 | flowdsl |" in text
    assert "shared 2-core CPU, no GPU" in text
    assert bench.main(["--quick", "--methods", "flowdsl", "--tasks", "two_moons", "--write", str(md)]) == 0
    assert md.read_text().count(bench.BEGIN) == 1 and "| gaussian_linear |" not in md.read_text()


@pytest.mark.skipif(not sbi_available(), reason="the sbi package is not installed (pip install sbi)")
@pytest.mark.filterwarnings("ignore:Maximum number of epochs")
def test_sbi_npe_trains_and_samples_a_flowdsl_spec():
    from sbi.inference import NPE
    from sbi.utils import BoxUniform

    task = get_task("two_moons")
    theta, x = task.simulate_pairs(300, seed=0)
    inference = NPE(prior=BoxUniform(task.low, task.high), show_progress_bars=False,
                    tracker=_benchmark().NullTracker(),  # not sbi's default ./sbi-logs/ in the working directory
                    density_estimator=flowdsl_density_estimator(TINY, seed=0))
    estimator = inference.append_simulations(theta, x).train(max_num_epochs=5)
    losses = inference.summary["validation_loss"]
    assert type(estimator).__name__ == "FlowDSLEstimator" and losses[-1] < losses[0]
    assert estimator.log_prob(torch.randn(4, 5, 2), torch.randn(5, 2)).shape == (4, 5)
    assert estimator.sample(torch.Size([3]), torch.randn(5, 2)).shape == (3, 5, 2)
    posterior = inference.build_posterior()
    samples = posterior.sample((200,), x=torch.tensor([[0.0, 0.1]]), show_progress_bars=False)
    assert samples.shape == (200, 2) and bool(task.in_support(samples).all())
    with pytest.raises(FlowDSLError, match="simulations have theta"):
        flowdsl_density_estimator(TINY)(torch.zeros(10, 3), torch.zeros(10, 2))
