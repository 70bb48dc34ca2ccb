"""Names written into each modality's meta.json by preprocessing and read by the model builder and
inference, kept here so that models need not import the data layer to read them."""

# meta.json `kind` of a modality whose records give precomputed feature arrays (fusion/preprocess/features.py).
FEATURES = "features"
