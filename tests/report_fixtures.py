"""JSON written the way `ifscope fade`, `ifscope diagnose` and `ifscope correct` write it, for the report tests."""

FADE = {"steps": [1, 3, 10, 30, 100], "mode": "remove",
        "methods": {"arnoldi": {"pearson": [0.97, 0.93, 0.81, 0.55, 0.31], "spearman": [0.95, 0.9, 0.78, 0.5, 0.28]},
                    "exact": {"pearson": [0.6, 0.7, 0.85, 0.9, 0.93], "spearman": [0.58, 0.66, 0.8, 0.88, 0.9]}},
        "gap": [1e-5, 3.2e-5, 1.1e-4, 4.0e-4, 2.5e-3], "gap_rate": 0.021, "horizon_half": 42.0}
DIAGNOSE = {"assumptions": {
    "convexity": {"verdict": "questionable", "advice": "keep only positive eigenvalues", "negative_mass": 0.12},
    "stability": {"verdict": "holds", "advice": "nothing to do", "condition_number": 310.0},
    "trajectory": {"verdict": "questionable", "advice": "read scores as continued-training effects"},
    "divergence": {"verdict": "violated", "advice": "trust predictions up to ~40 steps", "horizon": 42},
    "first_order": {"verdict": "holds", "advice": "linear in epsilon", "slope": 1.0}}}
CORRECT = {"n_queries": 12, "fix_rate": {"influence": 0.58, "random": 0.17, "random_same_class": 0.25,
                                         "query_itself": 0.92},
           "heldout_accuracy": {"before": 0.95, "after": 0.947}, "broken": 2, "seconds_per_correction": 0.31,
           "queries": [{"index": 3, "fixed": True}, {"index": 8, "fixed": False}]}
SELF_INFLUENCE = {"auc": 0.97, "n_train": 200, "n_flipped": 20, "method": "arnoldi", "view": "none", "image_shape": [],
                  "classes": None, "top": [{"index": 17, "score": 41.5, "label": 3, "flipped": True},
                                           {"index": 5, "score": 30.25, "label": 1, "flipped": False}]}


LDS = {"retrain": "scratch", "steps": None, "seeds": 1, "subsets": 100, "fraction": 0.5, "n_train": 200,
       "n_queries": 20, "methods": {"exact": {"lds": 0.955, "ci": [0.951, 0.959], "lds_margin": 0.93}}}


def write_fixtures(workdir) -> None:
    """Write fade.json, diagnose.json, correct.json, self_influence.json and lds.json into the fitted run directory."""
    from ifscope.run.store import RunDir
    run = RunDir(workdir)
    for name, data in (("fade.json", FADE), ("diagnose.json", DIAGNOSE), ("correct.json", CORRECT),
                       ("self_influence.json", SELF_INFLUENCE), ("lds.json", LDS)):
        run.save_json(name, data)
