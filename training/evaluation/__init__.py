"""Model -> numbers and pictures: depth metrics, evaluation over frame blocks, paired statistics, sparsification
(confidence ranking) and previews."""
