"""Re-runs the papers' tables: grids as data (mib.toml, kd.toml), the runs (runner), our cells
beside the paper's numbers (results) and the papers' claims checked (claims).
`python -m kdseg.reproduce --paper=mib --table=1` (kdseg/reproduce/__main__.py)."""
