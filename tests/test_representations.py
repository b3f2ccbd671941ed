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
    wide = np.hstack([x] * 6)  # 72 features > 50 samples: the Gram form is used
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


def direct_hsic_u(k, l):
    """The U-statistic by its definition: the mean over ordered distinct quadruples (i, j, q, r)
    of K_ij L_ij + K_ij L_qr - 2 K_ij L_iq (Song et al. 2012)."""
    import itertools

    n = len(k)
    total, count = 0.0, 0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]
        count += 1
    return total / count


def test_unbiased_hsic_equals_the_direct_u_statistic():
    from reversibility.representations import hsic_unbiased

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 2))
    k, l = x @ x.T, y @ y.T
    assert hsic_unbiased(k, l) == pytest.approx(direct_hsic_u(k, l), rel=1e-9)


def test_unbiased_cka_agrees_in_feature_and_gram_space_and_ignores_translation(features):
    x, rng = features
    y = np.tanh(x[:, :4]) + 0.5 * rng.normal(size=(50, 4))
    feature_space = linear_cka(x, y, unbiased=True)  # 50 samples > 12 features
    gram_space = linear_cka(np.hstack([x] * 5), y, unbiased=True)  # 60 features: Gram form
    assert feature_space == pytest.approx(gram_space, rel=1e-9)
    assert linear_cka(x + 3.0, y - 1.0, unbiased=True) == pytest.approx(feature_space, rel=1e-9)
    assert linear_cka(x, x, unbiased=True) == pytest.approx(1.0)


def test_cka_accumulated_over_minibatches_equals_one_pass(features):
    from reversibility.representations import CKAAccumulator

    x, rng = features
    y = x @ rng.normal(size=(12, 5)) + rng.normal(size=(50, 5))
    whole = CKAAccumulator().update(x, y)
    pieces = CKAAccumulator()
    for start in range(0, 50, 7):
        pieces.update(x[start : start + 7], y[start : start + 7])
    assert pieces.biased() == pytest.approx(whole.biased(), rel=1e-10)
    assert pieces.unbiased() == pytest.approx(whole.unbiased(), rel=1e-10)
    assert whole.biased() == pytest.approx(linear_cka(x, y), rel=1e-10)


def test_principal_directions_match_scikit_learn_up_to_sign(features):
    from sklearn.decomposition import PCA

    from reversibility.representations import principal_axes

    x, _ = features
    _, axes, variances = principal_axes(x, 3)
    reference = PCA(n_components=3).fit(x)
    for ours, theirs in zip(axes, reference.components_):
        assert abs(ours @ theirs) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(variances, reference.explained_variance_, rtol=1e-9)


def test_pca_similarity_is_sign_invariant_and_drops_when_directions_change(features):
    from reversibility.representations import pca_similarity

    x, rng = features
    assert pca_similarity(x, -x) == {"pc1_cosine": pytest.approx(1.0), "subspace": pytest.approx(1.0)}
    scrambled = x[:, rng.permutation(12)]
    assert pca_similarity(x, scrambled)["pc1_cosine"] < 0.9


def test_pca_shift_measures_a_translation_along_the_base_axes(features):
    from reversibility.representations import pca_shift, principal_axes

    x, _ = features
    _, axes, variances = principal_axes(x, 2)
    moved = x + 2.0 * axes[0] - 0.5 * axes[1]
    shift = pca_shift(x, moved)
    assert shift["shift_pc1"] == pytest.approx(2.0) and shift["pc2"] == pytest.approx(-0.5)
    assert shift["normalised_pc1"] == pytest.approx(2.0 / np.sqrt(variances[0]))
    assert shift["distance"] == pytest.approx(np.hypot(2.0 / np.sqrt(variances[0]), 0.5 / np.sqrt(variances[1])))
    assert pca_shift(x, x)["distance"] == pytest.approx(0.0, abs=1e-9)
