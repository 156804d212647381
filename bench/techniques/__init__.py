"""One registry module per axis; bench.axes is the table that lists them. Importing a module here is cheap:
builders import torch themselves."""
