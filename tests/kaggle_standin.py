"""A local stand-in for Kaggle's API, for the real `kaggle` client (`KAGGLE_API_ENVIRONMENT=LOCALHOST`).

kagglesdk sends each call as a JSON POST to <endpoint>/api/v1/<service>/<method> (kaggle_http_client.py).
Which endpoint: kagglesdk alone reads KAGGLE_API_ENVIRONMENT=TEST as http://localhost:7777 (kaggle_env.py),
but the `kaggle` package (2.2.5) builds its client with an environment of its own (KaggleApi.args,
build_kaggle_client_with_params): PROD unless KAGGLE_API_ENVIRONMENT=LOCALHOST, which is http://localhost,
port 80. The pipeline talks through the `kaggle` package, so the stand-in serves on localhost:80 (binding it
needs root: elsewhere the tests that use it skip). A file goes up as a PUT to the URL a StartBlobUpload or
StartSubmissionUpload answer hands out. Requests are parsed and answers built with kagglesdk's own types
(`from_dict` / `to_dict`), so their shapes are the client's; an error is Kaggle's JSON
`{"code": N, "message": ...}` with that HTTP status, which the client raises as `requests.HTTPError`.
Every call is recorded (`calls`: method name and the parsed request object), and so is every upload.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kagglesdk.blobs.types.blob_api_service import ApiStartBlobUploadRequest, ApiStartBlobUploadResponse
from kagglesdk.competitions.types.competition_api_service import (
    ApiCreateSubmissionRequest, ApiCreateSubmissionResponse, ApiGetSubmissionLimitsRequest, ApiListSubmissionsRequest,
    ApiListSubmissionsResponse, ApiStartSubmissionUploadRequest, ApiStartSubmissionUploadResponse, ApiSubmission,
    ApiSubmissionLimits)
from kagglesdk.competitions.types.submission_status import SubmissionStatus
from kagglesdk.datasets.types.dataset_api_service import (
    ApiCreateDatasetRequest, ApiCreateDatasetResponse, ApiCreateDatasetVersionRequest, ApiGetDatasetStatusRequest,
    ApiGetDatasetStatusResponse)
from kagglesdk.datasets.types.dataset_enums import DatabundleVersionStatus
from kagglesdk.kernels.types.kernels_api_service import ApiSaveKernelRequest, ApiSaveKernelResponse
from kagglesdk.security.types.oauth_service import IntrospectTokenRequest, IntrospectTokenResponse

HOST, PORT = "127.0.0.1", 80
BASE = "http://localhost"
ENVIRONMENT = "LOCALHOST"  # the value of KAGGLE_API_ENVIRONMENT that sends the kaggle package here


class Refused(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Kaggle:
    """What the stand-in holds and how it behaves; tests read and set these."""
    user: str = "me"
    datasets: dict = field(default_factory=dict)      # "owner/slug" -> list of versions, each {name: bytes}
    kernels: dict = field(default_factory=dict)       # "owner/slug" -> list of ApiSaveKernelRequest
    submissions: list = field(default_factory=list)   # ApiSubmission, newest first
    calls: list = field(default_factory=list)         # (method, request object)
    blobs: dict = field(default_factory=dict)         # token -> (file name, bytes or None until uploaded)
    refuse_uploads: bool = False                      # PUTs answer 403 (a failed upload)
    refuse_submissions: str = ""                      # CreateSubmission answers 400 with this message
    newest_client: str = ""                           # X-Kaggle-APIVersion on every answer (outdated client)

    def methods(self) -> dict:
        return {"IntrospectToken": (IntrospectTokenRequest, self.introspect),
                "GetDatasetStatus": (ApiGetDatasetStatusRequest, self.dataset_status),
                "StartBlobUpload": (ApiStartBlobUploadRequest, self.start_blob),
                "CreateDataset": (ApiCreateDatasetRequest, self.create_dataset),
                "CreateDatasetVersion": (ApiCreateDatasetVersionRequest, self.create_version),
                "SaveKernel": (ApiSaveKernelRequest, self.save_kernel),
                "StartSubmissionUpload": (ApiStartSubmissionUploadRequest, self.start_submission),
                "CreateSubmission": (ApiCreateSubmissionRequest, self.create_submission),
                "GetSubmissionLimits": (ApiGetSubmissionLimitsRequest, lambda request: ApiSubmissionLimits()),
                "ListSubmissions": (ApiListSubmissionsRequest, self.list_submissions)}

    def introspect(self, request):
        answer = IntrospectTokenResponse()
        answer.active, answer.username = True, self.user
        return answer

    def dataset_status(self, request):
        if f"{request.owner_slug}/{request.dataset_slug}" not in self.datasets:
            raise Refused(404, "Not found")
        answer = ApiGetDatasetStatusResponse()
        answer.status = DatabundleVersionStatus.READY
        return answer

    def upload_slot(self, name: str, answer):
        token = f"blob{len(self.blobs)}"
        self.blobs[token] = (name, None)
        answer.token, answer.create_url = token, f"{BASE}/upload/{token}"
        return answer

    def start_blob(self, request):
        return self.upload_slot(request.name, ApiStartBlobUploadResponse())

    def uploaded(self, files) -> dict:
        return {self.blobs[item.token][0]: self.blobs[item.token][1] for item in files}

    def dataset_answer(self, ref: str):
        answer = ApiCreateDatasetResponse()
        answer.ref, answer.url, answer.status = ref, f"{BASE}/datasets/{ref}", "ok"
        return answer

    def create_dataset(self, request):
        ref = f"{request.owner_slug}/{request.slug}"
        if ref in self.datasets:
            answer = ApiCreateDatasetResponse()
            answer.status, answer.error = "error", "The requested slug is already in use"
            return answer
        self.datasets[ref] = [self.uploaded(request.files)]
        return self.dataset_answer(ref)

    def create_version(self, request):
        ref = f"{request.owner_slug}/{request.dataset_slug}"
        if ref not in self.datasets:
            raise Refused(404, f"Dataset {ref} not found")
        self.datasets[ref].append(self.uploaded(request.body.files))
        return self.dataset_answer(ref)

    def save_kernel(self, request):
        versions = self.kernels.setdefault(request.slug, [])
        versions.append(request)
        answer = ApiSaveKernelResponse()
        answer.ref, answer.url, answer.version_number = request.slug, f"{BASE}/code/{request.slug}", len(versions)
        answer.invalid_dataset_sources = [ref for ref in request.dataset_data_sources if ref not in self.datasets]
        return answer

    def start_submission(self, request):
        return self.upload_slot(request.file_name, ApiStartSubmissionUploadResponse())

    def create_submission(self, request):
        if self.refuse_submissions:
            raise Refused(400, self.refuse_submissions)
        name, body = self.blobs[request.blob_file_tokens]
        if body is None:
            raise Refused(400, "the submission file was never uploaded")
        self.add_submission(request.submission_description, name)
        answer = ApiCreateSubmissionResponse()
        answer.message, answer.ref = "Successfully submitted to TGS Salt Identification Challenge", \
            self.submissions[0].ref
        return answer

    def add_submission(self, description: str, name: str = "submission.csv", public: str = "", private: str = ""):
        item = ApiSubmission()
        item.ref, item.description, item.file_name = 1000 + len(self.submissions), description, name
        item.status = SubmissionStatus.COMPLETE if public else SubmissionStatus.PENDING
        item.public_score, item.private_score = public, private
        self.submissions.insert(0, item)

    def list_submissions(self, request):
        size = request.page_size or 20
        page = int(request.page_token) if request.page_token else (request.page or 1)
        answer = ApiListSubmissionsResponse()
        answer.submissions = self.submissions[(page - 1) * size: page * size]
        answer.next_page_token = str(page + 1) if page * size < len(self.submissions) else ""
        return answer


def handler_for(kaggle: Kaggle):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def answer(self, code: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if kaggle.newest_client:
                self.send_header("X-Kaggle-APIVersion", kaggle.newest_client)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            method = self.path.rstrip("/").rsplit("/", 1)[-1]
            request_type, handle = kaggle.methods().get(method, (None, None))
            if handle is None:
                return self.answer(404, {"code": 404, "message": f"no method {self.path} in the stand-in"})
            request = request_type.from_dict(json.loads(self.body() or b"{}"))
            kaggle.calls.append((method, request))
            try:
                response = handle(request)
            except Refused as refused:
                return self.answer(refused.code, {"code": refused.code, "message": str(refused)})
            self.answer(200, type(response).to_dict(response))

        def do_PUT(self):
            token = self.path.rsplit("/", 1)[-1]
            data = self.body()
            if kaggle.refuse_uploads or token not in kaggle.blobs:
                return self.answer(403, {"code": 403, "message": "upload refused"})
            kaggle.blobs[token] = (kaggle.blobs[token][0], data)
            self.answer(200, {})

    return Handler


class Server:
    """The stand-in, serving on localhost:80 in a thread while the `with` block runs."""

    def __init__(self):
        self.kaggle = Kaggle()
        self.http = ThreadingHTTPServer((HOST, PORT), handler_for(self.kaggle))
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def __enter__(self) -> Kaggle:
        self.thread.start()
        return self.kaggle

    def __exit__(self, *exc):
        self.http.shutdown()
        self.http.server_close()
