"""Image-classification models: the built-in default model and its loaders."""
