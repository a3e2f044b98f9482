"""Where the artifact store and the tracking server are: the spec's settings, else the cluster's defaults.

On a cluster the Helm chart's ConfigMap (`<release>-config`, loaded with `envFrom`) names them:

    FACTORY_STORE_ROOT       s3://bucket/prefix of the artifact store
    FACTORY_S3_ENDPOINT_URL  the S3-compatible endpoint (MinIO's service); empty for AWS S3
    FACTORY_S3_REGION        the S3 region
    FACTORY_TRACKING_URI     the MLflow server

This module is the one place that reads them. What a spec sets wins; a setting the spec leaves out comes
from these variables, so the same spec runs on a laptop (local folder, SQLite) and in a pipeline pod. The
entry points (`factory` commands, KFP steps) call `with_cluster_defaults` once, right after loading a
spec; `factory lineage` on an `s3://` URI without a spec uses `store_for_uri`.

    spec = with_cluster_defaults(load_spec("spec.yaml"))
    store = store_for_uri("s3://factory/store/release/0123abcd", spec)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field

from factory.errors import InputError, ServiceError
from factory.spec import Spec
from factory.store import S3Store

ENV_STORE_ROOT = "FACTORY_STORE_ROOT"
ENV_S3_ENDPOINT_URL = "FACTORY_S3_ENDPOINT_URL"
ENV_S3_REGION = "FACTORY_S3_REGION"
ENV_TRACKING_URI = "FACTORY_TRACKING_URI"


class ClusterDefaults(BaseModel):
    """The store and tracking settings of the environment (None where a variable is unset or empty)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    store_root: str | None = Field(None, description=f"Artifact store root ({ENV_STORE_ROOT})")
    s3_endpoint_url: str | None = Field(None, description=f"S3 endpoint URL; None for AWS ({ENV_S3_ENDPOINT_URL})")
    s3_region: str | None = Field(None, description=f"S3 region ({ENV_S3_REGION})")
    tracking_uri: str | None = Field(None, description=f"MLflow tracking URI ({ENV_TRACKING_URI})")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ClusterDefaults:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(name, "").strip() or None  # the chart writes "" for "not set" (AWS S3)

        return cls(store_root=get(ENV_STORE_ROOT), s3_endpoint_url=get(ENV_S3_ENDPOINT_URL),
                   s3_region=get(ENV_S3_REGION), tracking_uri=get(ENV_TRACKING_URI))


def cluster_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of this module that are set here, to hand on to the pods of a launched job."""
    env = os.environ if environ is None else environ
    return {k: env[k] for k in (ENV_STORE_ROOT, ENV_S3_ENDPOINT_URL, ENV_S3_REGION, ENV_TRACKING_URI) if env.get(k, "").strip()}


def with_cluster_defaults(spec: Spec, environ: Mapping[str, str] | None = None) -> Spec:
    """`spec` with the store and tracking settings it leaves out taken from the environment.

    "Leaves out" means the field is absent from the spec as written (pydantic's `model_fields_set`), so
    call this on a freshly loaded spec, before `resolved()` rewrites paths.
    """
    defaults = ClusterDefaults.from_environ(environ)
    storage_written, tracking_written = spec.storage.model_fields_set, spec.tracking.model_fields_set
    storage: dict[str, str] = {}
    if defaults.store_root and "root" not in storage_written:
        storage["root"] = defaults.store_root
    if defaults.s3_endpoint_url and spec.storage.endpoint_url is None:
        storage["endpoint_url"] = defaults.s3_endpoint_url
    if defaults.s3_region and spec.storage.region is None:
        storage["region"] = defaults.s3_region
    update: dict[str, object] = {}
    if storage:
        update["storage"] = spec.storage.model_copy(update=storage)
    if defaults.tracking_uri and spec.tracking.uri is None and "uri" not in tracking_written:
        update["tracking"] = spec.tracking.model_copy(update={"uri": defaults.tracking_uri})
    return spec.model_copy(update=update) if update else spec


def store_for_uri(uri: str, spec: Spec | None = None, environ: Mapping[str, str] | None = None) -> tuple[S3Store, str]:
    """The S3 store holding `uri` (s3://bucket/key...) and the key of `uri` inside it.

    The endpoint and region are the spec's storage settings when a spec is given, else the environment's.
    """
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise InputError(f"{uri}: not an s3://bucket/key URI")
    if spec is not None:
        spec = with_cluster_defaults(spec, environ)
        endpoint, region = spec.storage.endpoint_url, spec.storage.region
    else:
        defaults = ClusterDefaults.from_environ(environ)
        endpoint, region = defaults.s3_endpoint_url, defaults.s3_region
    return S3Store(f"s3://{parsed.netloc}", endpoint_url=endpoint, region=region), parsed.path.strip("/")


def unreachable(what: str, endpoint: str | None, error: BaseException) -> ServiceError:
    """The one-line error for an endpoint that failed: names it and says where the setting comes from."""
    where = endpoint or "the default AWS S3 endpoint"
    detail = " ".join(str(error).split())  # botocore messages may span lines
    return ServiceError(f"cannot read {what} from {where}: {detail} "
                        f"(set storage.endpoint_url in the spec, or {ENV_S3_ENDPOINT_URL})")
