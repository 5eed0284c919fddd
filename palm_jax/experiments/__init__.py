"""Experiments: sweeps over configs and seeds, and their aggregation into tables.

A floor above the jobs: `spec` expands a sweep config into members (one workdir each),
`runner` runs them here one after another, `cluster` writes SLURM / TPU command lists,
`aggregate` turns the members' eval/*.json into results.csv and results.md, and `sweep`
is the `config.job = "sweep"` job that ties them together.
"""
