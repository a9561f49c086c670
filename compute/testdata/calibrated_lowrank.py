# Generates calibrated_lowrank.json, the numpy reference of
# TestLowRankCalibratedNumpy: the rank-k minimiser of
# ||(W - A) Xa^T||_F with Xa = [X; sqrt(n lambda) I], lambda = alpha tr(X^T X / n) / in,
# computed as U_k U_k^T W from numpy's (LAPACK) SVD of W Xa^T: no whitening,
# no Cholesky. Run with Debian's python3-numpy:
#   /usr/bin/python3 compute/testdata/calibrated_lowrank.py > compute/testdata/calibrated_lowrank.json
import json
import numpy as np

rng = np.random.default_rng(20)
cases = []
for n, d_in, d_out, k, alpha in [(40, 7, 9, 2, 0.0), (6, 10, 8, 3, 1e-2), (64, 16, 12, 5, 1e-3)]:
    x = rng.standard_normal((n, d_in)) * np.logspace(0, -2, d_in)
    w = rng.standard_normal((d_out, d_in))
    lam = alpha * np.trace(x.T @ x / n) / d_in
    xa = np.vstack([x, np.sqrt(n * lam) * np.eye(d_in)])
    u, _, _ = np.linalg.svd(w @ xa.T, full_matrices=False)
    a = u[:, :k] @ u[:, :k].T @ w
    cases.append({"n": n, "in": d_in, "out": d_out, "k": k, "alpha": alpha,
                  "x": x.ravel().tolist(), "w": w.ravel().tolist(), "a": a.ravel().tolist()})
print(json.dumps(cases))
