# The portal's image: web (gunicorn), RQ workers and the scheduler all run from it.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# collectstatic needs settings; these values exist only for this build step.
RUN DEBUG=0 SECRET_KEY=build-only STATIC_ROOT=/app/staticfiles python manage.py collectstatic --no-input -v 0

RUN useradd --system --uid 10001 portal && mkdir -p /app/var && chown portal /app/var
USER portal
ENV STATIC_ROOT=/app/staticfiles
EXPOSE 8000
CMD ["gunicorn", "portal.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "120", "--access-logfile", "-"]
