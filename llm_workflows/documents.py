"""Source documents for the FAQ workflows, and how they are put into a prompt."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Document:
    title: str
    content: str


def combine(documents: list[Document]) -> str:
    """All documents as one block of text, each under its title (the prompts cite titles)."""
    return "\n\n".join(f"Source Title: {d.title}\nContent: {d.content}" for d in documents)


def read_documents(paths: list[str | Path]) -> list[Document]:
    """Text or markdown files as documents: the title is the first heading or the file name."""
    documents = []
    for path in map(Path, paths):
        try:
            text = path.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{path} is not UTF-8 text (byte {error.object[error.start]:#04x} at position "
                f"{error.start}); save it as UTF-8"
            ) from None
        first, _, rest = text.partition("\n")
        if first.startswith("#"):
            title, content = first.lstrip("#").strip(), rest.strip()
        else:
            title, content = path.stem.replace("_", " ").replace("-", " "), text
        if not content:
            raise ValueError(
                f"{path} has no text; pass a text or markdown file with the page's text"
            )
        documents.append(Document(title, content))
    return documents
