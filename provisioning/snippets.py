"""Ready-to-paste client configuration for an index: pip, uv, Poetry and twine.

Each snippet is a few blocks, each pasted in one place (a shell, or a file named by `where`)
with its own copy button. Installs read from the index (`index_url`); twine, `uv publish` and
`poetry publish` send files to the portal (`upload_url`). When the index has its own CA, a first
block writes it to an absolute path in the user's home and the others refer to that path, so
every command works from any directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

SHELL = "shell (Linux, macOS)"
# Where the CA goes: $HOME is expanded by the shell, so configuration files get an absolute path.
CA_DIR = "$HOME/.config/private-index"
WINDOWS_DIR = r"C:\ProgramData\pip"
REPOSITORY = "private"  # the name the index goes by in uv, Poetry and .pypirc


@dataclass(frozen=True)
class Block:
    where: str
    text: str


@dataclass(frozen=True)
class Snippet:
    key: str
    title: str
    blocks: tuple[Block, ...]


def ca_path(index_name: str) -> str:
    return f"{CA_DIR}/{index_name}-ca.pem"


def client_snippets(
    *,
    index_url: str,
    upload_url: str,
    index_name: str,
    username: str,
    password: str,
    ca_pem: str | None = None,
    publish: bool = False,
) -> list[Snippet]:
    """Snippets for one credential. `index_url` ends in /simple/; `ca_pem` is the index's CA
    certificate when it does not use a public CA; `publish` adds the upload snippets."""
    parts = urlsplit(index_url)
    authed = parts._replace(netloc=f"{quote(username, safe='')}:{quote(password, safe='')}@{parts.netloc}").geturl()
    ca = ca_path(index_name) if ca_pem else None
    windows_ca = rf"{WINDOWS_DIR}\{index_name}-ca.pem"
    snippets: list[Snippet] = []
    if ca_pem:
        pem = ca_pem.strip()
        snippets.append(Snippet("ca", "CA certificate (once per machine; the snippets below refer to it)", (
            Block(SHELL, f'mkdir -p "{CA_DIR}"\ncat > "{ca}" <<\'PEM\'\n{pem}\nPEM\n'),
            Block("PowerShell (Windows, as administrator)",
                  f"New-Item -ItemType Directory -Force {WINDOWS_DIR} | Out-Null\n"
                  f"@'\n{pem}\n'@ | Set-Content -Encoding ascii {windows_ca}\n"),
        )))  # fmt: skip
    pip_commands = f"python3 -m pip config --user set global.index-url {authed}\n"
    if ca:
        pip_commands += f'python3 -m pip config --user set global.cert "{ca}"\n'
    snippets.append(Snippet("pip", "pip (Linux and macOS)", (
        Block(f"{SHELL}: writes your user pip.conf (~/.config/pip/pip.conf)", pip_commands),
    )))  # fmt: skip
    snippets.append(Snippet("pip-ini", "pip (Windows)", (
        Block(rf"{WINDOWS_DIR}\pip.ini",
              f"[global]\nindex-url = {authed}\n" + (f"cert = {windows_ca}\n" if ca else "")),
    )))  # fmt: skip
    uv_env = (
        f"export UV_INDEX_{REPOSITORY.upper()}_USERNAME={username}\n"
        f"export UV_INDEX_{REPOSITORY.upper()}_PASSWORD={password}\n"
    )
    if ca:
        uv_env += f'export SSL_CERT_FILE="{ca}"\n'
    uv_blocks = [
        Block("pyproject.toml", f'[[tool.uv.index]]\nname = "{REPOSITORY}"\nurl = "{index_url}"\ndefault = true\n'),
        Block(f"{SHELL} or CI secrets, then uv add / uv sync", uv_env),
    ]
    if publish:
        uv_blocks.append(Block(SHELL, f"uv publish --publish-url {upload_url} --username {username} "
                                      f"--password {password} dist/*\n"))  # fmt: skip
    snippets.append(Snippet("uv", "uv", tuple(uv_blocks)))
    poetry = (
        f"poetry source add --priority=primary {REPOSITORY} {index_url}\n"
        f"poetry config http-basic.{REPOSITORY} {username} {password}\n"
    )
    if ca:
        poetry += f'poetry config certificates.{REPOSITORY}.cert "{ca}"\n'
    poetry_blocks = [Block(f"{SHELL}, in your project", poetry)]
    if publish:
        poetry_blocks.append(Block(f"{SHELL}, in your project", (
            f"poetry config repositories.{REPOSITORY} {upload_url}\n"
            f"poetry publish -r {REPOSITORY}\n"
        )))  # fmt: skip
    snippets.append(Snippet("poetry", "Poetry", tuple(poetry_blocks)))
    if publish:
        snippets.append(Snippet("twine", "twine", (
            Block("~/.pypirc", f"[distutils]\nindex-servers = {REPOSITORY}\n\n[{REPOSITORY}]\n"
                               f"repository = {upload_url}\nusername = {username}\npassword = {password}\n"),
            Block(SHELL, f"twine upload -r {REPOSITORY} dist/*\n"),
        )))  # fmt: skip
    return snippets
