"""Ready-to-paste client configuration for an index: pip, uv, poetry and twine."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit


@dataclass(frozen=True)
class Snippet:
    key: str
    title: str
    where: str
    text: str


def client_snippets(
    *, index_url: str, username: str, password: str, ca_file: str | None = None, publish: bool = False
) -> list[Snippet]:
    """Snippets for one credential. `index_url` ends in /simple/; `ca_file` is where the user
    saved the index's CA certificate, when the index does not use a public CA."""
    parts = urlsplit(index_url)
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    authed = parts._replace(netloc=netloc).geturl()
    upload_url = parts._replace(path="/").geturl()
    cert_line = f"cert = {ca_file}\n" if ca_file else ""
    snippets = [
        Snippet(
            "pip-conf", "pip (Linux and macOS)", "~/.config/pip/pip.conf",
            f"[global]\nindex-url = {authed}\n{cert_line}",
        ),
        Snippet(
            "pip-ini", "pip (Windows)", r"C:\ProgramData\pip\pip.ini",
            f"[global]\nindex-url = {authed}\n{cert_line}",
        ),
        Snippet(
            "uv", "uv", "pyproject.toml (credentials from the environment)",
            f'[[tool.uv.index]]\nname = "private"\nurl = "{index_url}"\ndefault = true\n\n'
            f"# in your shell or CI secrets:\nexport UV_INDEX_PRIVATE_USERNAME={username}\n"
            f"export UV_INDEX_PRIVATE_PASSWORD={password}\n"
            + (f"export SSL_CERT_FILE={ca_file}\n" if ca_file else ""),
        ),
        Snippet(
            "poetry", "Poetry", "shell",
            f"poetry source add --priority=primary private {index_url}\n"
            f"poetry config http-basic.private {username} {password}\n"
            + (f"poetry config certificates.private.cert {ca_file}\n" if ca_file else ""),
        ),
    ]  # fmt: skip
    if publish:
        snippets.append(
            Snippet(
                "pypirc", "twine", "~/.pypirc, then: twine upload -r private dist/*",
                f"[distutils]\nindex-servers = private\n\n[private]\nrepository = {upload_url}\n"
                f"username = {username}\npassword = {password}\n",
            )
        )  # fmt: skip
        if ca_file:
            snippets[-1] = Snippet(
                snippets[-1].key, snippets[-1].title,
                f"~/.pypirc, then: twine upload -r private --cert {ca_file} dist/*", snippets[-1].text,
            )  # fmt: skip
    return snippets
