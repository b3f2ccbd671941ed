import numpy as np
import pytest

from reversibility.representations import linear_cka


def random_orthogonal(d, rng):
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    return rng.normal(size=(50, 8)) @ rng.normal(size=(8, 12)), rng


def test_cka_of_a_view_with_itself_is_one(features):
    x, _ = features
    assert linear_cka(x, x) == pytest.approx(1.0)


def test_cka_is_invariant_to_rotation_scaling_and_translation(features):
    x, rng = features
    y = np.tanh(x @ rng.normal(size=(12, 6)))
    reference = linear_cka(x, y)
    assert linear_cka(3.5 * x @ random_orthogonal(12, rng) + 7.0, y) == pytest.approx(reference)
    assert linear_cka(x, 0.1 * y @ random_orthogonal(6, rng)) == pytest.approx(reference)


def test_gram_and_feature_forms_agree(features):
    x, rng = features
    y = x[:, :5] + 0.3 * rng.normal(size=(50, 5))
    wide = np.hstack([x] * 6)            # 72 features > 50 samples: the Gram form is used
    assert linear_cka(wide, y) == pytest.approx(linear_cka(x, y))


def test_cka_matches_the_hsic_definition(features):
    x, rng = features
    y = rng.normal(size=(50, 3))
    n = len(x)
    h = np.eye(n) - 1 / n
    def hsic(k, l):
        return np.trace(k @ h @ l @ h)
    k, l = x @ x.T, y @ y.T
    assert linear_cka(x, y) == pytest.approx(hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l)))


def test_cka_of_unrelated_views_is_small_and_non_finite_input_gives_nan(features):
    x, rng = features
    assert linear_cka(rng.normal(size=(400, 4)), rng.normal(size=(400, 4))) < 0.05
    broken = x.copy()
    broken[0, 0] = np.nan
    assert np.isnan(linear_cka(broken, x))
    with pytest.raises(ValueError, match="same samples"):
        linear_cka(x, x[:10])
