"""`tunesmith ui`: a local web app over the same library the CLI uses (files.py: what the UI may read and
keep; app.py: the Gradio Blocks, mounted on a FastAPI app like `tunesmith serve`'s).

Step 1 of issue 17: the Data tab (upload or pick a file -> what `inspect` says, role mapping applied in one click,
rows as training sees them with supervised tokens highlighted) and the Runs tab (run folders with their state,
the report opened inline), in English and Korean.
"""
