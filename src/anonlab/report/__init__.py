"""Reports read what runs wrote (results store, identity rows, patch evaluations, leaks.json, recommend.json):
tables for the terminal and Markdown (:mod:`.tables`), and one offline HTML page (:mod:`.html`, inputs found and
checked by :mod:`.inputs`; the thumbnail row, the one part that reads a frame again, in :mod:`.thumbs`)."""
