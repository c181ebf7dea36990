"""Reference predictors without a training loop (scikit-learn, faiss on frozen features), that a run's
report sets beside its model on the same split."""
