"""The teaching layer: what the notebooks show and how they run, on top of the library (``segkit``).

The library trains, evaluates and keeps run folders; nothing in it imports this package. This layer
reads run folders and calls the library, and needs the ``teaching`` extra (plotly, ipywidgets,
papermill, matplotlib): ``pip install 'segkit[teaching]'``.

    session         notebooks (a notebook's Job: its runs, tables and figures), widgets, recipe_editor
    views           plots, tables, gallery, pictures, explain, measurements
    the study       comparison (the recipe study's per-seed values), verdicts (their intervals), results
    running them    headless (`segkit notebooks`), papermill_engine, pages, report, colab
    the workshop    classroom (`segkit share`, `segkit class`)
"""
