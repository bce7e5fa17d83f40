"""HTTP adapters: the only package (with app.py) that imports falcon."""
