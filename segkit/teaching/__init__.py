"""The teaching layer: what the notebooks show and how they run, on top of the library (``segkit``).

The library trains, evaluates and keeps run folders; nothing in it imports this package. This layer
reads run folders and calls the library, and needs the ``teaching`` extra (plotly, ipywidgets,
papermill, matplotlib): ``pip install 'segkit[teaching]'``.

    6 session       notebooks (a notebook's Job: its runs, tables and figures), headless (`segkit notebooks`),
                    papermill_engine
    5 views         plots, tables, gallery, pictures, explain, widgets, recipe_editor, measurements;
                    results (notebook 04), report and pages (the summary and offline pages);
                    comparison (the recipe study's per-seed values), verdicts (their intervals);
                    classroom (`segkit share`, `segkit class`), colab
"""
