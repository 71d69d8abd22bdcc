"""Loading patching sets, downstream sets and bug reports from local files, with one clear error per bad file."""

from mudjacking.data.bug_report import BugReport, BugReportError, load_bug_report, save_bug_report
from mudjacking.data.builtin import LabeledImages, load_demo_images, load_digits_images, load_fashion_mnist
from mudjacking.data.images import (
    DataError,
    load_image,
    load_image_folder,
    load_labeled_images,
    save_image_png,
)
from mudjacking.data.text_files import load_labeled_texts, load_sentences

__all__ = [
    "BugReport",
    "BugReportError",
    "DataError",
    "LabeledImages",
    "load_bug_report",
    "load_demo_images",
    "load_digits_images",
    "load_fashion_mnist",
    "load_image",
    "load_image_folder",
    "load_labeled_images",
    "load_labeled_texts",
    "load_sentences",
    "save_bug_report",
    "save_image_png",
]
