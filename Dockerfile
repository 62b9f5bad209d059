# The same steps as .ci/run: a Python 3.11 environment, then the README's install command.
# A CPU image by default: torch's CPU wheel from PyTorch's index (PyPI's torch is the CUDA build, gigabytes).
# For a GPU image: docker build --build-arg TORCH_INDEX= .   (PyPI's CUDA build of the same pinned version)
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /app
COPY . /app
RUN if [ -n "${TORCH_INDEX}" ]; then export PIP_EXTRA_INDEX_URL="${TORCH_INDEX}"; fi; \
    pip install --no-cache-dir -r requirements.txt
ENV CLINLINKER_DATA_DIR=/data \
    HF_HUB_OFFLINE=1
VOLUME ["/data", "/models", "/indexes"]
EXPOSE 9090
# With no CLINLINKER_INDEX this serves the demo gazetteer; mount an index and set CLINLINKER_INDEX=/indexes/ix.
# Listening beyond the container needs credentials: -e CLINLINKER_BASIC_AUTH_USER=... -e
# CLINLINKER_BASIC_AUTH_PASSWORD=... -e CLINLINKER_PICKER_TOKEN=... (or CLINLINKER_ALLOW_OPEN=1 on purpose).
CMD ["clinlinker", "serve", "--host", "0.0.0.0"]
