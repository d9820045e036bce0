"""Clump Scout labels -> COCO JSON datasets: raw Zooniverse exports (:mod:`.zooniverse`,
:mod:`.aggregation`), consensus tables (:mod:`.consensus`), sky catalogues (:mod:`.catalog`),
the writer and its drop reports (:mod:`.coco_writer`), the dataset layout (:mod:`.layout`) and
splits by galaxy (:mod:`.splits`). Offline steps: nothing here runs during training."""
