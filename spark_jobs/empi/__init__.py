"""The resident master index (EMPI): links every source record about a person to one ``person_id``.

:mod:`~spark_jobs.empi.records` reads the identity records of every source, :mod:`~spark_jobs.empi.match`
links them (deterministic on a valid ID-card number, probabilistic otherwise) and writes the EMPI
tables, :mod:`~spark_jobs.empi.evaluate` measures the links against the simulator's ground truth.
"""
