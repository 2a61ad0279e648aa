# churnsignal: the web app (default command), the worker and the CLI in one image.
# See docs/deploy.md. The NLP models ship inside the package: nothing is downloaded at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The BG/NBD features go through pytensor, which warns on every start when it finds no C++
# compiler. The image has none on purpose: scoring (the worker's job) is as fast without one;
# only `churnsignal fusion train` is slower (3,000 customers: 2 min 47 s instead of 59 s).
ENV PYTENSOR_FLAGS=cxx=

# torch first, from the CPU index: the package's torch==2.13.0 would otherwise be resolved
# from PyPI, whose Linux wheel is the CUDA build (several GB).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

# Only what `pip install .` reads, so the image does not depend on what else is in the checkout.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY churnsignal churnsignal
COPY nlp nlp
COPY fusion fusion
COPY worker worker
COPY webhook webhook
RUN pip install . && rm -rf /src

# Not root, with a fixed numeric id: the mounted model file must be readable by uid 10001,
# and a runtime can see from the number alone that the user is not root.
RUN useradd --create-home --uid 10001 churnsignal
USER 10001
WORKDIR /home/churnsignal
# service.data_dir's default: the sweeper's schedule file (and SQLite, if it is used).
RUN mkdir -p /home/churnsignal/.local/share/churnsignal

EXPOSE 8000
CMD ["churnsignal", "serve", "--bind", "0.0.0.0:8000"]
