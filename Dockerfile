# Slim runtime image for mcp-defense (`make docker-build`; `make docker-demo` runs the demo in it). The entry point is the CLI:
#
#   docker run --rm -i -v "$PWD:/workspace" -w /workspace mcp-defense \
#       stdio --archetype filesystem --set workspace=/workspace -- <server command>
#   docker run --rm mcp-defense demo
#
# The server runs inside the container too, so the image needs whatever runtime the server
# does (derive from this one and add it). The procfs flow source works unprivileged here: it
# watches the server, a child of the proxy in the same pid namespace.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the wheel is built from (see [tool.hatch.build] in pyproject.toml).
COPY pyproject.toml README.md /src/
COPY mcp_defense /src/mcp_defense
COPY grammar /src/grammar
COPY policies /src/policies
COPY examples /src/examples
RUN pip install /src && rm -rf /src

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin mcpd
USER mcpd
WORKDIR /home/mcpd

ENTRYPOINT ["mcp-defense"]
CMD ["--help"]
