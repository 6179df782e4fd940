"""Azure Resource Manager: resource groups, storage accounts (+ listKeys, file shares) and
container groups, with the long-running-operation headers the SDKs poll.

Shapes follow the published specs (Resources 2025-04-01, Storage 2026-09-01, Container Instances
2023-05-01) and the answers recorded in shared/notes/azure-rest.md.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
import time
from collections.abc import Callable
from urllib.parse import quote

from .containers import ContainerRuntime
from .http import Request, Response, arm_error, iso_now, json_response, new_id
from .state import ContainerGroup, EmulatorState, FileShare, Operation, StorageAccount, public_definition

_RG = r"^/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)"
_SA = _RG + r"/providers/microsoft\.storage/storageaccounts/(?P<account>[^/]+)"
_CG = _RG + r"/providers/microsoft\.containerinstance/containergroups/(?P<cg>[^/]+)"
_SUB = r"^/subscriptions/(?P<sub>[^/]+)"

STORAGE_NAME_RE = re.compile(r"^[a-z0-9]{3,24}$")
DNS_LABEL_RE = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")
STORAGE_SKUS = {
    "Standard_LRS",
    "Standard_GRS",
    "Standard_RAGRS",
    "Standard_ZRS",
    "Premium_LRS",
    "Premium_ZRS",
    "Standard_GZRS",
    "Standard_RAGZRS",
    # Azure Files provisioned v2, listed in the Storage 2026-09-01 spec's SkuName enum.
    "StandardV2_LRS",
    "StandardV2_GRS",
    "StandardV2_ZRS",
    "StandardV2_GZRS",
    "PremiumV2_LRS",
    "PremiumV2_ZRS",
}
STORAGE_KINDS = {"Storage", "StorageV2", "BlobStorage", "FileStorage", "BlockBlobStorage"}
# Which SKUs hold Azure file shares, by account kind: premium (SSD) and provisioned v2 shares
# need a FileStorage account; a Premium_LRS StorageV2 account has no Azure Files at all.
# https://learn.microsoft.com/en-us/azure/storage/files/storage-files-planning#management-concepts
# https://learn.microsoft.com/en-us/azure/storage/files/understanding-billing
FILESTORAGE_SKUS = {"Premium_LRS", "Premium_ZRS", *(sku for sku in STORAGE_SKUS if "V2_" in sku)}
# Smallest share in GiB per billing model ("Understand Azure Files billing"): provisioned v1
# (Premium) 100 GiB, provisioned v2 32 GiB, pay-as-you-go (Standard) 1 GiB.
SHARE_MINIMUM_GIB = {"Premium_LRS": 100, "Premium_ZRS": 100, **{sku: 32 for sku in STORAGE_SKUS if "V2_" in sku}}
# The reuse scopes of a container group's DNS name label (ACI 2023-05-01 spec, IpAddress).
DNS_LABEL_SCOPES = {"Unsecure", "TenantReuse", "SubscriptionReuse", "ResourceGroupReuse", "Noreuse"}
DOCKER_HUB = "docker.io"


def image_registry(image: str) -> str:
    """The registry an image reference pulls from (Docker's rule: a first part with a dot or a
    colon is a host, anything else is Docker Hub)."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return "docker.io" if first in ("index.docker.io", "registry-1.docker.io") else first
    return DOCKER_HUB


class ArmService:
    def __init__(self, state: EmulatorState, file_endpoint: Callable[[str], str]) -> None:
        self.state = state
        self.file_endpoint = file_endpoint  # account name -> https://.../account/
        # Set when the emulator runs the containers as processes (see containers.py).
        self.runtime: ContainerRuntime | None = None
        self.routes: list[tuple[str, re.Pattern, Callable[..., Response], str, str]] = []
        route = self._route
        route(
            "GET",
            _SUB + r"/providers/microsoft\.containerinstance/locations/[^/]+/operations/(?P<op>[^/]+)$",
            self.get_operation,
            "Microsoft.ContainerInstance/locations/operations",
            "read",
        )
        route(
            "GET",
            _SUB + r"/providers/microsoft\.storage/locations/[^/]+/asyncoperations/(?P<op>[^/]+)$",
            self.get_storage_operation,
            "Microsoft.Storage/locations/asyncoperations",
            "read",
        )
        route(
            "GET",
            _SUB + r"/operationresults/(?P<op>[^/]+)$",
            self.get_rg_operation,
            "Microsoft.Resources/subscriptions/operationresults",
            "read",
        )
        route("PUT", _RG + "$", self.put_rg, "Microsoft.Resources/subscriptions/resourceGroups", "write")
        route("GET", _RG + "$", self.get_rg, "Microsoft.Resources/subscriptions/resourceGroups", "read")
        route("HEAD", _RG + "$", self.head_rg, "Microsoft.Resources/subscriptions/resourceGroups", "read")
        route("DELETE", _RG + "$", self.delete_rg, "Microsoft.Resources/subscriptions/resourceGroups", "delete")
        route("PUT", _SA + "$", self.put_account, "Microsoft.Storage/storageAccounts", "write")
        route("GET", _SA + "$", self.get_account, "Microsoft.Storage/storageAccounts", "read")
        route("DELETE", _SA + "$", self.delete_account, "Microsoft.Storage/storageAccounts", "delete")
        route("POST", _SA + "/listkeys$", self.list_keys, "Microsoft.Storage/storageAccounts/listkeys", "action")
        route(
            "PUT",
            _SA + r"/fileservices/default/shares/(?P<share>[^/]+)$",
            self.put_share,
            "Microsoft.Storage/storageAccounts/fileServices/shares",
            "write",
        )
        route(
            "GET",
            _SA + r"/fileservices/default/shares/(?P<share>[^/]+)$",
            self.get_share,
            "Microsoft.Storage/storageAccounts/fileServices/shares",
            "read",
        )
        route(
            "PATCH",
            _SA + r"/fileservices/default/shares/(?P<share>[^/]+)$",
            self.patch_share,
            "Microsoft.Storage/storageAccounts/fileServices/shares",
            "write",
        )
        route(
            "DELETE",
            _SA + r"/fileservices/default/shares/(?P<share>[^/]+)$",
            self.delete_share,
            "Microsoft.Storage/storageAccounts/fileServices/shares",
            "delete",
        )
        route("PUT", _CG + "$", self.put_group, "Microsoft.ContainerInstance/containerGroups", "write")
        route("GET", _CG + "$", self.get_group, "Microsoft.ContainerInstance/containerGroups", "read")
        route("DELETE", _CG + "$", self.delete_group, "Microsoft.ContainerInstance/containerGroups", "delete")
        route(
            "GET",
            _CG + "/containers/(?P<container>[^/]+)/logs$",
            self.container_logs,
            "Microsoft.ContainerInstance/containerGroups/containers/logs",
            "read",
        )
        route(
            "POST",
            _CG + "/(?P<action>restart|stop|start)$",
            self.group_action,
            "Microsoft.ContainerInstance/containerGroups/{action}",
            "action",
        )

    def _route(self, method: str, pattern: str, handler: Callable[..., Response], rtype: str, verb: str) -> None:
        self.routes.append((method, re.compile(pattern, re.IGNORECASE), handler, rtype, verb))

    # --- Dispatch, authentication and authorization.
    def handle(self, request: Request) -> Response:
        token = request.header("authorization")
        if not token.lower().startswith("bearer "):
            return arm_error(
                401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
            )
        with self.state.lock:
            issued = self.state.tokens.get(token[7:].strip())
        if issued is None or issued.expires < time.time():
            return arm_error(
                401,
                "InvalidAuthenticationToken",
                "The access token is invalid or has expired.",
                {
                    "WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/", '
                    'error="invalid_token"'
                },
            )
        path = request.path
        for method, pattern, handler, rtype, verb in self.routes:
            match = pattern.match(path)
            if match is None:
                continue
            if method != request.method:
                continue
            args = match.groupdict()
            action = f"{rtype.format(**args)}/{verb}"
            scope = path.split("/restart")[0].split("/listKeys")[0]
            if any(action.lower() == denied.lower() for denied in self.state.denied_actions):
                return arm_error(
                    403,
                    "AuthorizationFailed",
                    f"The client '{issued.client_id}' with object id '{issued.client_id}' does not have "
                    f"authorization to perform action '{action}' over scope '{scope}' or the scope is "
                    "invalid. If access was recently granted, please refresh your credentials.",
                )
            namespace = rtype.split("/")[0]
            if any(namespace.lower() == n.lower() for n in self.state.unregistered_providers):
                # The first use of a provider in a subscription where nobody registered it.
                # https://learn.microsoft.com/en-us/azure/azure-resource-manager/troubleshooting/error-register-resource-provider
                return arm_error(
                    409,
                    "MissingSubscriptionRegistration",
                    f"The subscription is not registered to use namespace '{namespace}'. See "
                    "https://aka.ms/rps-not-found for how to register subscriptions.",
                )
            with self.state.lock:
                response = handler(request, **args)
                if self.runtime is not None:  # groups deleted alone or with their resource group
                    self.runtime.sync()
                return response
        if any(p.match(path) for _, p, *_ in self.routes):
            return arm_error(405, "MethodNotAllowed", f"The requested method {request.method} is not allowed.")
        return arm_error(404, "InvalidResourceType", f"The resource type could not be found for '{path}'.")

    def _api_version(self, request: Request) -> str:
        return request.query.get("api-version", "")

    # --- Resource groups.
    def _rg_body(self, sub: str, rg: dict) -> dict:
        return {
            "id": f"/subscriptions/{sub}/resourceGroups/{rg['name']}",
            "name": rg["name"],
            "type": "Microsoft.Resources/resourceGroups",
            "location": rg["location"],
            "tags": rg["tags"],
            "properties": {"provisioningState": rg["provisioningState"]},
        }

    def _rg_missing(self, rg: str) -> Response:
        return arm_error(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")

    def put_rg(self, request: Request, sub: str, rg: str) -> Response:
        body = request.json()
        if not body.get("location"):
            return arm_error(400, "LocationRequired", "The location property is required for this definition.")
        key = (sub.lower(), rg.lower())
        existing = self.state.resource_groups.get(key)
        if existing is not None and existing["provisioningState"] == "Deleting":
            return arm_error(
                409,
                "ResourceGroupBeingDeleted",
                f"The resource group '{rg}' is in deprovisioning state and cannot perform this operation.",
            )
        if existing is not None and existing["location"].lower() != body["location"].lower():
            return arm_error(
                409,
                "InvalidResourceGroupLocation",
                f"Invalid resource group location '{body['location']}'. The Resource group already exists in "
                f"location '{existing['location']}'.",
            )
        group = {
            "name": existing["name"] if existing else rg,
            "location": body["location"],
            "tags": body.get("tags") or {},
            "provisioningState": "Succeeded",
        }
        self.state.resource_groups[key] = group
        return json_response(200 if existing else 201, self._rg_body(sub, group))

    def get_rg(self, request: Request, sub: str, rg: str) -> Response:
        group = self.state.resource_groups.get((sub.lower(), rg.lower()))
        return json_response(200, self._rg_body(sub, group)) if group else self._rg_missing(rg)

    def head_rg(self, request: Request, sub: str, rg: str) -> Response:
        return Response(204 if (sub.lower(), rg.lower()) in self.state.resource_groups else 404)

    def delete_rg(self, request: Request, sub: str, rg: str) -> Response:
        key = (sub.lower(), rg.lower())
        group = self.state.resource_groups.get(key)
        if group is None:
            return self._rg_missing(rg)
        group["provisioningState"] = "Deleting"
        op_id = new_id()
        self.state.operations[op_id] = Operation("rg-delete", key, polls_left=self.state.storage_polls)
        location = (
            f"{request.base_url}/subscriptions/{sub}/operationresults/{op_id}?api-version={self._api_version(request)}"
        )
        return Response(202, b"", {"Location": location, "Retry-After": "0"})

    def get_rg_operation(self, request: Request, sub: str, op: str) -> Response:
        operation = self.state.operations.get(op)
        if operation is None or operation.kind != "rg-delete":
            return arm_error(404, "NotFound", "The operation was not found.")
        if operation.polls_left > 0:
            operation.polls_left -= 1
            return Response(
                202, b"", {"Location": request.base_url + request.path + "?" + request.raw_query, "Retry-After": "0"}
            )
        sub_key, rg_key = operation.target
        self.state.resource_groups.pop(operation.target, None)
        for name, account in list(self.state.storage_accounts.items()):
            if (account.subscription.lower(), account.resource_group.lower()) == (sub_key, rg_key):
                del self.state.storage_accounts[name]
        for key in [k for k in self.state.container_groups if k[:2] == (sub_key, rg_key)]:
            del self.state.container_groups[key]
        return Response(200)

    # --- Storage accounts.
    def _account_body(self, account: StorageAccount) -> dict:
        endpoint = self.file_endpoint(account.name)
        tier = "Premium" if account.sku.startswith("Premium") else "Standard"
        return {
            "id": f"/subscriptions/{account.subscription}/resourceGroups/{account.resource_group}"
            f"/providers/Microsoft.Storage/storageAccounts/{account.name}",
            "name": account.name,
            "type": "Microsoft.Storage/storageAccounts",
            "location": account.location,
            "tags": account.tags,
            "sku": {"name": account.sku, "tier": tier},
            "kind": account.kind,
            "properties": {
                **account.properties,
                "provisioningState": account.provisioning_state,
                "creationTime": account.created,
                "primaryLocation": account.location,
                "statusOfPrimary": "available",
                "primaryEndpoints": {"file": endpoint},
            },
        }

    def _find_account(self, sub: str, rg: str, name: str) -> StorageAccount | None:
        account = self.state.account(name)
        if account is None:
            return None
        if (account.subscription.lower(), account.resource_group.lower()) != (sub.lower(), rg.lower()):
            return None
        return account

    def _account_missing(self, name: str) -> Response:
        return arm_error(
            404,
            "ResourceNotFound",
            f"The Resource 'Microsoft.Storage/storageAccounts/{name}' under resource group was not found.",
        )

    def put_account(self, request: Request, sub: str, rg: str, account: str) -> Response:
        if (sub.lower(), rg.lower()) not in self.state.resource_groups:
            return self._rg_missing(rg)
        if not STORAGE_NAME_RE.match(account):
            return arm_error(
                400,
                "AccountNameInvalid",
                f"{account} is not a valid storage account name. Storage account name must be between 3 and 24 "
                "characters in length and use numbers and lower-case letters only.",
            )
        body = request.json()
        sku = (body.get("sku") or {}).get("name")
        kind = body.get("kind")
        location = body.get("location")
        if sku not in STORAGE_SKUS or kind not in STORAGE_KINDS or not location:
            return arm_error(
                400,
                "InvalidRequestContent",
                "The request content was invalid: sku.name, kind and location are required.",
            )
        if kind == "FileStorage" and sku not in FILESTORAGE_SKUS:
            return arm_error(
                400,
                "InvalidRequestContent",
                f"The SKU '{sku}' is not supported for the account kind 'FileStorage': use Premium_LRS, "
                "Premium_ZRS or a provisioned v2 SKU.",
            )
        if "V2_" in sku and kind != "FileStorage":
            return arm_error(
                400, "InvalidRequestContent", f"The provisioned v2 SKU '{sku}' needs the account kind 'FileStorage'."
            )
        existing = self.state.account(account)
        if (
            existing is not None and self._find_account(sub, rg, account) is None
        ) or account in self.state.taken_storage_names:
            return arm_error(
                409, "StorageAccountAlreadyTaken", f"The storage account named {account} is already taken."
            )
        properties = {k: v for k, v in (body.get("properties") or {}).items() if k != "provisioningState"}
        if existing is not None:
            existing.tags = body.get("tags") or {}
            existing.properties.update(properties)
            existing.sku = sku
            return json_response(200, self._account_body(existing))
        created = StorageAccount(
            subscription=sub,
            resource_group=rg,
            name=account,
            location=location,
            sku=sku,
            kind=kind,
            tags=body.get("tags") or {},
            properties=properties,
            created=iso_now(),
            pending_polls=self.state.storage_polls,
        )
        self.state.storage_accounts[account] = created
        if created.pending_polls == 0:
            return json_response(200, self._account_body(created))
        op_id = new_id()
        self.state.operations[op_id] = Operation("storage-create", (account,))
        location_url = (
            f"{request.base_url}/subscriptions/{sub}/providers/Microsoft.Storage/locations/{location}"
            f"/asyncoperations/{op_id}?monitor=true&api-version={self._api_version(request)}"
        )
        return Response(202, b"", {"Location": location_url, "Retry-After": "0"})

    def get_storage_operation(self, request: Request, sub: str, op: str) -> Response:
        operation = self.state.operations.get(op)
        if operation is None or operation.kind != "storage-create":
            return arm_error(404, "NotFound", "The operation was not found.")
        account = self.state.account(operation.target[0])
        if account is None:
            return arm_error(404, "ResourceNotFound", "The storage account was deleted.")
        if account.pending_polls > 0:
            account.pending_polls -= 1
            return Response(
                202, b"", {"Location": request.base_url + request.path + "?" + request.raw_query, "Retry-After": "0"}
            )
        return json_response(200, self._account_body(account))

    def get_account(self, request: Request, sub: str, rg: str, account: str) -> Response:
        found = self._find_account(sub, rg, account)
        return json_response(200, self._account_body(found)) if found else self._account_missing(account)

    def delete_account(self, request: Request, sub: str, rg: str, account: str) -> Response:
        found = self._find_account(sub, rg, account)
        if found is None:
            return Response(204)
        del self.state.storage_accounts[found.name]
        return Response(200)

    def list_keys(self, request: Request, sub: str, rg: str, account: str) -> Response:
        found = self._find_account(sub, rg, account)
        if found is None:
            return self._account_missing(account)
        keys = [
            {"keyName": f"key{i + 1}", "value": value, "permissions": "FULL", "creationTime": found.created}
            for i, value in enumerate(found.keys)
        ]
        return json_response(200, {"keys": keys})

    # --- File shares (management plane).
    def _share_body(self, account: StorageAccount, share: FileShare) -> dict:
        return {
            "id": f"/subscriptions/{account.subscription}/resourceGroups/{account.resource_group}/providers/"
            f"Microsoft.Storage/storageAccounts/{account.name}/fileServices/default/shares/{share.name}",
            "name": share.name,
            "type": "Microsoft.Storage/storageAccounts/fileServices/shares",
            "etag": share.etag,
            "properties": {
                "shareQuota": share.quota_gb,
                "enabledProtocols": share.protocols,
                "lastModifiedTime": iso_now(),
                "accessTier": "TransactionOptimized",
            },
        }

    def _share_problem(self, account: StorageAccount, quota: int) -> Response | None:
        if account.sku.startswith("Premium") and account.kind != "FileStorage":
            # Premium StorageV2 accounts are for page blobs; they have no file service.
            return arm_error(
                400,
                "FeatureNotSupportedForAccount",
                f"File is not supported for the account: a {account.sku} {account.kind} account has no Azure "
                "Files; premium file shares need the FileStorage kind.",
            )
        minimum = SHARE_MINIMUM_GIB.get(account.sku, 1)
        if not minimum <= quota <= 102400:
            return arm_error(
                400,
                "InvalidHeaderValue",
                "The value for one of the HTTP headers is not in the correct format. Share quota must be between "
                f"{minimum} and 102400 GiB for {account.sku}.",
            )
        return None

    def put_share(self, request: Request, sub: str, rg: str, account: str, share: str) -> Response:
        found = self._find_account(sub, rg, account)
        if found is None:
            return self._account_missing(account)
        props = request.json().get("properties") or {}
        quota = int(props.get("shareQuota") or 5120)
        problem = self._share_problem(found, quota)
        if problem is not None:
            return problem
        existing = found.shares.get(share)
        if existing is not None:
            existing.quota_gb = quota
            return json_response(200, self._share_body(found, existing))
        created = self.state.new_share(share, quota_gb=quota, protocols=props.get("enabledProtocols") or "SMB")
        found.shares[share] = created
        return json_response(201, self._share_body(found, created))

    def patch_share(self, request: Request, sub: str, rg: str, account: str, share: str) -> Response:
        """FileShares_Update: only the properties sent change."""
        found = self._find_account(sub, rg, account)
        if found is None or share not in found.shares:
            return arm_error(404, "ShareNotFound", "The specified share does not exist.")
        existing = found.shares[share]
        props = request.json().get("properties") or {}
        quota = int(props.get("shareQuota") or existing.quota_gb)
        problem = self._share_problem(found, quota)
        if problem is not None:
            return problem
        existing.quota_gb = quota
        existing.etag = f'"0x{time.time_ns():X}"'
        return json_response(200, self._share_body(found, existing))

    def get_share(self, request: Request, sub: str, rg: str, account: str, share: str) -> Response:
        found = self._find_account(sub, rg, account)
        if found is None or share not in found.shares:
            return arm_error(404, "ShareNotFound", "The specified share does not exist.")
        return json_response(200, self._share_body(found, found.shares[share]))

    def delete_share(self, request: Request, sub: str, rg: str, account: str, share: str) -> Response:
        found = self._find_account(sub, rg, account)
        if found is None or found.shares.pop(share, None) is None:
            return Response(204)
        return Response(200)

    # --- Container groups.
    def _group_key(self, sub: str, rg: str, cg: str) -> tuple[str, str, str]:
        return (sub.lower(), rg.lower(), cg.lower())

    def _advance(self, group: ContainerGroup) -> None:
        """Every look at a group moves it one step: a deployment towards Running, a restart towards
        done, a crash-looping container through one more restart."""
        if group.restart_pending:
            # A restart is asynchronous: the first looks still show the containers from before.
            if group.restart_polls > 0:
                group.restart_polls -= 1
                return
            group.restart_pending = False
            if not group.stalled:
                self._run_containers(group, restarted=True)
            return
        if group.stalled:
            # A volume that cannot be mounted: the deployment hangs, the events say why.
            for container in group.definition["containers"]:
                self._event(group, container["name"], "FailedMount", group.stalled, warning=True)
            return
        if group.pending_polls > 0:
            group.pending_polls -= 1
            if group.pending_polls == 0 and not group.failure:
                self._run_containers(group)
            return
        if not group.failure and not group.stopped:
            for name, output in group.crash_loops.items():
                group.restart_counts[name] = group.restart_counts.get(name, 0) + 1
                group.logs.setdefault(name, []).extend(output.splitlines())
                self._event(group, name, "BackOff", f"Back-off restarting failed container {name}", warning=True)

    def _run_containers(self, group: ContainerGroup, *, restarted: bool = False) -> None:
        """The containers (re)start now: new start time, events, a first log line each (and, with
        a runtime, a restart starts the processes again)."""
        group.started = iso_now()
        if restarted and self.runtime is not None:
            group.failure = self.runtime.start(group)
        for container in group.definition["containers"]:
            name = container["name"]
            if restarted:
                group.restart_counts[name] = group.restart_counts.get(name, 0) + 1
                self._event(group, name, "Killing", f"Killing container {name} for restart")
            self._event(group, name, "Started", f"Started container {name}")
            image = container["properties"]["image"]
            group.logs.setdefault(name, []).append(f"{group.started} emulator: started {image}")
            output = group.crash_loops.get(name)
            if output:
                group.logs[name].extend(output.splitlines())

    def _event(self, group: ContainerGroup, container: str, name: str, message: str, *, warning: bool = False) -> None:
        now = iso_now()
        last = next((e for e in reversed(group.events) if e["container"] == container), None)
        if last is not None and (last["name"], last["message"]) == (name, message):
            last["count"] += 1  # Azure folds repeated events into one with a count
            last["lastTimestamp"] = now
            return
        group.events.append(
            {
                "container": container,
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "name": name,
                "message": message,
                "type": "Warning" if warning or name == "Failed" else "Normal",
            }
        )

    def _group_state(self, group: ContainerGroup) -> tuple[str, str]:
        """(provisioningState, instanceView.state)."""
        if group.failure:
            return "Failed", "Failed"
        if group.pending_polls > 0 or group.stalled:
            return "Pending", "Pending"
        if group.stopped:
            return "Succeeded", "Stopped"
        return "Succeeded", "Running"

    def _group_body(self, group: ContainerGroup) -> dict:
        provisioning, state = self._group_state(group)
        properties = public_definition(group.definition)
        for container in properties["containers"]:
            name = container["name"]
            current: dict[str, object]
            previous: dict[str, object] | None = None
            if state == "Running" and name in group.crash_loops and not group.restart_pending:
                # Crash loops keep provisioningState Succeeded: only the container shows them.
                # https://learn.microsoft.com/en-us/azure/container-instances/container-instances-troubleshooting
                current = {"state": "Waiting", "detailStatus": "CrashLoopBackOff: Back-off restarting failed"}
                previous = {"state": "Terminated", "exitCode": 1, "startTime": group.started, "detailStatus": "Error"}
            elif state == "Running":
                current = {"state": "Running", "startTime": group.started, "detailStatus": ""}
            elif state == "Stopped":
                current = {"state": "Terminated", "exitCode": 0, "detailStatus": "Stopped"}
            else:
                current = {"state": "Waiting", "detailStatus": group.failure or group.stalled or "ContainerCreating"}
            if self.runtime is not None and state == "Running" and previous is None:
                current = self.runtime.container_state(group, name) or current  # the processes' own state
            view: dict[str, object] = {
                "restartCount": group.restart_counts.get(name, 0),
                "currentState": current,
                "events": [
                    {k: v for k, v in e.items() if k != "container"} for e in group.events if e["container"] == name
                ][-10:],
            }
            if previous:
                view["previousState"] = previous
            container["properties"]["instanceView"] = view
        properties["provisioningState"] = provisioning
        properties["instanceView"] = {"state": state, "events": []}
        ip = properties.get("ipAddress")
        if ip is not None:
            ip["ip"] = f"20.0.{hash(group.name) % 250}.{len(group.name)}"
            if group.fqdn:
                ip["fqdn"] = group.fqdn
        return {
            "id": f"/subscriptions/{group.subscription}/resourceGroups/{group.resource_group}/providers/"
            f"Microsoft.ContainerInstance/containerGroups/{group.name}",
            "name": group.name,
            "type": "Microsoft.ContainerInstance/containerGroups",
            "location": group.location,
            "tags": group.tags,
            **({"identity": group.identity} if group.identity else {}),
            "properties": properties,
        }

    def _fqdn(self, sub: str, rg: str, location: str, ip: dict) -> str:
        """The host name ARM gives a label. A reuse scope adds a hash of the label and the scope
        (tenant, subscription, resource group), so a released label cannot be claimed by another
        tenant: <label>.<hash>.<region>.azurecontainer.io.
        https://learn.microsoft.com/en-us/azure/container-instances/how-to-reuse-dns-names"""
        label = ip.get("dnsNameLabel") or ""
        if not label:
            return ""
        region = location.lower().replace(" ", "")
        scope = ip.get("autoGeneratedDomainNameLabelScope") or "Unsecure"
        if scope == "Unsecure":
            return f"{label}.{region}.azurecontainer.io"
        parts = {
            "TenantReuse": [self.state.tenant_id],
            "SubscriptionReuse": [self.state.tenant_id, sub.lower()],
            "ResourceGroupReuse": [self.state.tenant_id, sub.lower(), rg.lower()],
        }.get(scope, [new_id()])  # Noreuse: a new hash every time
        digest = hashlib.sha256("|".join([label, scope, *parts]).encode()).digest()
        hashed = base64.b32encode(digest).decode().lower()[:16]
        return f"{label}.{hashed}.{region}.azurecontainer.io"

    def _validate_group(self, sub: str, body: dict, name: str) -> Response | None:
        props = body.get("properties") or {}
        containers = props.get("containers") or []
        if not body.get("location"):
            return arm_error(400, "LocationRequired", "The location property is required for this definition.")
        if not containers:
            return arm_error(
                400, "ContainerGroupContainersRequired", "The container group must have at least one container."
            )
        if props.get("osType") not in ("Linux", "Windows"):
            return arm_error(
                400, "InvalidOsType", "The 'osType' property is required and must be 'Linux' or 'Windows'."
            )
        volumes = {v.get("name"): v for v in props.get("volumes") or []}
        exposed: set[int] = set()
        for container in containers:
            cprops = container.get("properties") or {}
            requests = (cprops.get("resources") or {}).get("requests") or {}
            if (
                not container.get("name")
                or not cprops.get("image")
                or "cpu" not in requests
                or "memoryInGB" not in requests
            ):
                return arm_error(
                    400,
                    "InvalidContainerDefinition",
                    f"Container '{container.get('name')}' needs a name, an image and resource requests.",
                )
            exposed.update(int(p["port"]) for p in cprops.get("ports") or [])
            for mount in cprops.get("volumeMounts") or []:
                if mount.get("name") not in volumes:
                    return arm_error(
                        400,
                        "VolumeMountNotFound",
                        f"The volume mount '{mount.get('name')}' of container '{container['name']}' is not defined "
                        "in the container group volumes.",
                    )
        for volume in volumes.values():
            azure_file = volume.get("azureFile")
            if azure_file is not None and not (
                azure_file.get("shareName")
                and azure_file.get("storageAccountName")
                and azure_file.get("storageAccountKey")
            ):
                return arm_error(
                    400,
                    "AzureFileVolumeInvalid",
                    f"The Azure File volume '{volume['name']}' needs shareName, storageAccountName and "
                    "storageAccountKey.",
                )
        ip = props.get("ipAddress")
        if ip is not None:
            for port in ip.get("ports") or []:
                if int(port["port"]) not in exposed:
                    return arm_error(
                        400,
                        "InvalidIpAddressPorts",
                        f"The public port '{port['port']}' is not exposed by any container.",
                    )
            label = ip.get("dnsNameLabel")
            if label and not DNS_LABEL_RE.match(label):
                return arm_error(400, "InvalidDnsNameLabel", f"The DNS name label '{label}' is invalid.")
            scope = ip.get("autoGeneratedDomainNameLabelScope")
            if scope is not None and scope not in DNS_LABEL_SCOPES:
                return arm_error(
                    400,
                    "InvalidAutoGeneratedDomainNameLabelScope",
                    f"The autoGeneratedDomainNameLabelScope '{scope}' is invalid: use one of "
                    f"{', '.join(sorted(DNS_LABEL_SCOPES))}.",
                )
        problem = self._registry_problem(body, name)
        if problem is not None:
            return problem
        if self.state.core_quota is not None:
            location = body["location"].lower()
            used = sum(
                sum(c["properties"]["resources"]["requests"]["cpu"] for c in g.definition["containers"])
                for key, g in self.state.container_groups.items()
                if g.location.lower() == location and key[2] != name.lower()
            )
            wanted = sum(c["properties"]["resources"]["requests"]["cpu"] for c in containers)
            if used + wanted > self.state.core_quota:
                return arm_error(
                    409,
                    "ContainerGroupQuotaReached",
                    f"Resource type 'Microsoft.ContainerInstance/containerGroups' container group quota "
                    f"'StandardCores' exceeded in region '{location}'. Limit: '{self.state.core_quota:g}', "
                    f"Usage: '{used:g}' Requested: '{wanted:g}'.",
                )
        return None

    def _registry_problem(self, body: dict, name: str) -> Response | None:
        """Registry credentials must name a user-assigned identity of the group, and anonymous
        pulls from a throttled registry (Docker Hub from Azure's shared addresses) fail at once.
        https://learn.microsoft.com/en-us/azure/container-instances/using-azure-container-registry-mi
        https://learn.microsoft.com/en-us/azure/container-registry/buffer-gate-public-content"""
        props = body.get("properties") or {}
        identities = {i.lower() for i in ((body.get("identity") or {}).get("userAssignedIdentities") or {})}
        servers = set()
        for credential in props.get("imageRegistryCredentials") or []:
            server = (credential.get("server") or "").lower()
            identity = credential.get("identity")
            if identity and identity.lower() not in identities:
                return arm_error(
                    400,
                    "InvalidImageRegistryCredentialIdentity",
                    f"The identity '{identity}' of the image registry credential for '{server}' is not a "
                    f"user-assigned identity of container group '{name}'.",
                )
            if not identity and not (credential.get("username") and credential.get("password")):
                return arm_error(
                    400,
                    "InvalidImageRegistryCredential",
                    f"The image registry credential for '{server}' needs an identity or a username and password.",
                )
            servers.add(server)
        for container in props.get("containers") or []:
            registry = image_registry(container["properties"]["image"])
            if registry in self.state.throttled_registries and registry not in servers:
                shown = "index.docker.io" if registry == DOCKER_HUB else registry
                return arm_error(
                    409,
                    "RegistryErrorResponse",
                    f"An error response is received from the docker registry '{shown}'. Please retry later.",
                )
        return None

    def _mount_failure(self, group: ContainerGroup) -> str:
        """Azure File volumes are mounted when the containers start: a wrong key or a missing
        share fails the deployment then."""
        for volume in group.definition.get("volumes") or []:
            azure_file = volume.get("azureFile")
            if not azure_file:
                continue
            account = self.state.account(azure_file["storageAccountName"])
            if account is None or azure_file["storageAccountKey"] not in account.keys:
                return (
                    f"Failed to mount Azure File Volume '{volume['name']}': the storage account name or key is invalid."
                )
            if azure_file["shareName"] not in account.shares:
                share = azure_file["shareName"]
                return f"Failed to mount Azure File Volume '{volume['name']}': share '{share}' does not exist."
        return ""

    def _start_deployment(self, request: Request, sub: str, group: ContainerGroup) -> str:
        failures = self.state.group_failures
        group.failure = failures.pop(group.name, None) or failures.pop("*", None) or ""
        # A mount that fails does not fail the deployment: it hangs, with events saying why.
        group.stalled = "" if group.failure else self._mount_failure(group)
        if not group.failure and not group.stalled and self.runtime is not None:
            group.failure = self.runtime.start(group)
        group.pending_polls = self.state.group_polls
        group.restart_pending = False
        group.stopped = False
        group.crash_loops = {
            c["name"]: self.state.crash_loops[c["name"]]
            for c in group.definition["containers"]
            if c["name"] in self.state.crash_loops
        }
        for container in group.definition["containers"]:
            image = container["properties"]["image"]
            self._event(group, container["name"], "Pulling", f'pulling image "{image}"')
            if group.failure:
                self._event(group, container["name"], "Failed", group.failure)
        op_id = new_id()
        self.state.operations[op_id] = Operation("cg", self._group_key(sub, group.resource_group, group.name))
        return (
            f"{request.base_url}/subscriptions/{sub}/providers/Microsoft.ContainerInstance/locations/"
            f"{quote(group.location)}/operations/{op_id}?api-version={self._api_version(request)}"
        )

    def _label_taken(self, key: tuple[str, str, str], fqdn: str, ip: dict) -> bool:
        if not fqdn:
            return False
        if (ip.get("autoGeneratedDomainNameLabelScope") or "Unsecure") == "Unsecure" and (
            ip.get("dnsNameLabel") in self.state.taken_dns_labels
        ):
            return True
        return any(g.fqdn == fqdn for k, g in self.state.container_groups.items() if k != key)

    def put_group(self, request: Request, sub: str, rg: str, cg: str) -> Response:
        if (sub.lower(), rg.lower()) not in self.state.resource_groups:
            return self._rg_missing(rg)
        body = request.json()
        invalid = self._validate_group(sub, body, cg)
        if invalid is not None:
            return invalid
        key = self._group_key(sub, rg, cg)
        definition = copy.deepcopy(body["properties"])
        definition.pop("provisioningState", None)
        definition.pop("instanceView", None)
        identity = copy.deepcopy(body.get("identity") or {})
        existing = self.state.container_groups.get(key)
        if existing is not None and existing.failure:
            # "Terminated or deleted container groups can't be updated ... the group must be
            # deployed as new." https://learn.microsoft.com/en-us/azure/container-instances/container-instances-update
            return arm_error(
                409,
                "ContainerGroupTerminated",
                f"The container group '{cg}' is in Failed state and can't be updated. Delete it and create it again.",
            )
        ip = definition.get("ipAddress") or {}
        fqdn = self._fqdn(sub, rg, body["location"], ip)
        if existing is not None and existing.fqdn and existing.definition.get("ipAddress", {}) == ip:
            fqdn = existing.fqdn  # the same label and scope keep their host name (even with Noreuse)
        if self._label_taken(key, fqdn, ip):
            return arm_error(
                400,
                "DnsNameLabelAlreadyTaken",
                f"The DNS name label '{ip.get('dnsNameLabel')}' in container group '{cg}' is not available. Try "
                "using a different label.",
            )
        if existing is not None and (existing.definition, existing.identity) == (definition, identity):
            # Re-sending unchanged properties restarts the containers in place (the "update
            # containers" page): the PUT answers at once and the restart shows later.
            existing.tags = body.get("tags") or {}
            existing.restart_pending, existing.restart_polls = True, self.state.restart_polls
            op_id = new_id()
            self.state.operations[op_id] = Operation("cg", key, status="Succeeded")
            async_url = (
                f"{request.base_url}/subscriptions/{sub}/providers/Microsoft.ContainerInstance/locations/"
                f"{quote(existing.location)}/operations/{op_id}?api-version={self._api_version(request)}"
            )
            return json_response(
                200, self._group_body(existing), {"Azure-AsyncOperation": async_url, "Retry-After": "0"}
            )
        if existing is not None:
            existing.definition = definition
            existing.identity = identity
            existing.tags = body.get("tags") or {}
            existing.generation += 1
            existing.restart_counts = {}
            group = existing
        else:
            group = ContainerGroup(sub, rg, cg, body["location"], body.get("tags") or {}, definition)
            group.identity = identity
            self.state.container_groups[key] = group
        group.fqdn = fqdn
        async_url = self._start_deployment(request, sub, group)
        status = 200 if existing is not None else 201
        return json_response(status, self._group_body(group), {"Azure-AsyncOperation": async_url, "Retry-After": "0"})

    def get_operation(self, request: Request, sub: str, op: str) -> Response:
        operation = self.state.operations.get(op)
        if operation is None or operation.kind != "cg":
            return arm_error(404, "NotFound", "The operation was not found.")
        now = iso_now()
        if operation.status != "InProgress":
            return json_response(
                200,
                {
                    "id": request.path,
                    "name": op,
                    "status": operation.status,
                    "error": operation.error,
                    "startTime": now,
                    "endTime": now,
                },
            )
        group = self.state.container_groups.get(operation.target)
        if group is None:
            operation.status = "Canceled"
        else:
            self._advance(group)
            if group.pending_polls == 0:
                if group.failure:
                    operation.status = "Failed"
                    operation.error = {"code": "ContainerGroupDeploymentFailed", "message": group.failure}
                else:
                    operation.status = "Succeeded"
        body: dict[str, object] = {"id": request.path, "name": op, "status": operation.status, "startTime": now}
        if operation.error:
            body["error"] = operation.error
        return json_response(200, body, {"Retry-After": "0"} if operation.status == "InProgress" else None)

    def get_group(self, request: Request, sub: str, rg: str, cg: str) -> Response:
        group = self.state.container_groups.get(self._group_key(sub, rg, cg))
        if group is None:
            return arm_error(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.ContainerInstance/containerGroups/{cg}' under resource group '{rg}' was "
                "not found.",
            )
        self._advance(group)
        return json_response(200, self._group_body(group))

    def delete_group(self, request: Request, sub: str, rg: str, cg: str) -> Response:
        group = self.state.container_groups.pop(self._group_key(sub, rg, cg), None)
        if group is None:
            return Response(204)
        return json_response(200, self._group_body(group))

    def group_action(self, request: Request, sub: str, rg: str, cg: str, action: str) -> Response:
        group = self.state.container_groups.get(self._group_key(sub, rg, cg))
        if group is None:
            return arm_error(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.ContainerInstance/containerGroups/{cg}' under resource group '{rg}' was "
                "not found.",
            )
        action = action.lower()
        if action == "stop":
            group.stopped = True
            if self.runtime is not None:
                self.runtime.stop(group)
            return Response(204)
        if action == "restart":
            if group.failure:
                return arm_error(409, "ContainerGroupNotRunning", f"Container group '{cg}' is not running.")
            # Asynchronous: 204 now, and the next GETs still show the containers from before.
            group.restart_pending, group.restart_polls = True, self.state.restart_polls
            return Response(204)
        async_url = self._start_deployment(request, sub, group)  # start
        return Response(202, b"", {"Azure-AsyncOperation": async_url, "Retry-After": "0"})

    def container_logs(self, request: Request, sub: str, rg: str, cg: str, container: str) -> Response:
        """Containers_ListLogs: {"content": the last `tail` lines}, like `az container logs`.
        https://learn.microsoft.com/en-us/azure/container-instances/container-instances-get-logs"""
        group = self.state.container_groups.get(self._group_key(sub, rg, cg))
        if group is None or container not in {c["name"] for c in group.definition["containers"]}:
            return arm_error(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.ContainerInstance/containerGroups/{cg}/containers/{container}' under "
                f"resource group '{rg}' was not found.",
            )
        tail = request.query.get("tail")
        count = int(tail) if tail is not None and tail.isdigit() else None
        if self.runtime is not None:  # the processes' real output
            return json_response(200, {"content": self.runtime.logs(group, container, count)})
        lines = group.logs.get(container, [])
        if count is not None:
            lines = lines[-count:] if count else []
        return json_response(200, {"content": "".join(f"{line}\n" for line in lines)})

    # --- Test helpers (called with the state lock held by the caller or alone).
    def crash_loop(self, group_name: str, container: str, output: str) -> None:
        """From now on `container` exits right after printing `output`, and restarts."""
        for group in self.state.container_groups.values():
            if group.name == group_name:
                group.crash_loops[container] = output

    def crash_container(self, group_name: str, container: str) -> None:
        for group in self.state.container_groups.values():
            if group.name == group_name:
                group.restart_counts[container] = group.restart_counts.get(container, 0) + 1
                self._event(
                    group, container, "Killing", f"Container {container} terminated with exit code 1, restarting"
                )
