"""The built-in settings: ``image`` (SimCLR CNN, Fashion-MNIST + digits) and ``text`` (all-MiniLM-L6-v2, movie
reviews + BBC News). Importing this package registers them."""

from mudjacking.pipeline.settings.image import ImageSetting
from mudjacking.pipeline.settings.text import TextSetting

__all__ = ["ImageSetting", "TextSetting"]
