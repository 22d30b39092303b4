"""The shared schemas: API bodies, stored rows and Parquet files come from here.

The HTTP API validates with these models, the state layer stores their JSON, and the
Parquet schemas derive from the rows of :mod:`offpeak.schemas.files`, so they cannot
drift. One module per dialect or concern; everything is importable from here.
"""

from offpeak.schemas.chat import (
    DEFAULT_MAX_TOKENS as DEFAULT_MAX_TOKENS,
)
from offpeak.schemas.chat import (
    MAX_COMPLETION_TOKENS as MAX_COMPLETION_TOKENS,
)
from offpeak.schemas.chat import (
    MAX_EMBEDDING_INPUTS as MAX_EMBEDDING_INPUTS,
)
from offpeak.schemas.chat import (
    ChatCompletionRequest as ChatCompletionRequest,
)
from offpeak.schemas.chat import (
    ChatMessage as ChatMessage,
)
from offpeak.schemas.chat import (
    EmbeddingInput as EmbeddingInput,
)
from offpeak.schemas.chat import (
    EmbeddingRequest as EmbeddingRequest,
)
from offpeak.schemas.chat import (
    JsonObjectFormat as JsonObjectFormat,
)
from offpeak.schemas.chat import (
    JsonSchemaFormat as JsonSchemaFormat,
)
from offpeak.schemas.chat import (
    JsonSchemaSpec as JsonSchemaSpec,
)
from offpeak.schemas.chat import (
    ResponseFormat as ResponseFormat,
)
from offpeak.schemas.chat import (
    TextFormat as TextFormat,
)
from offpeak.schemas.chat import (
    TextPart as TextPart,
)
from offpeak.schemas.common import (
    MAX_WINDOW_SECONDS as MAX_WINDOW_SECONDS,
)
from offpeak.schemas.common import (
    MIN_WINDOW_SECONDS as MIN_WINDOW_SECONDS,
)
from offpeak.schemas.common import (
    window_seconds as window_seconds,
)
from offpeak.schemas.datasets import (
    DatasetFormat as DatasetFormat,
)
from offpeak.schemas.datasets import (
    DatasetMapping as DatasetMapping,
)
from offpeak.schemas.exxa import (
    BatchCreate as BatchCreate,
)
from offpeak.schemas.exxa import (
    BatchObject as BatchObject,
)
from offpeak.schemas.exxa import (
    CarbonObject as CarbonObject,
)
from offpeak.schemas.exxa import (
    ErrorInfo as ErrorInfo,
)
from offpeak.schemas.exxa import (
    ModelCard as ModelCard,
)
from offpeak.schemas.exxa import (
    RequestCounts as RequestCounts,
)
from offpeak.schemas.exxa import (
    RequestCreate as RequestCreate,
)
from offpeak.schemas.exxa import (
    RequestId as RequestId,
)
from offpeak.schemas.exxa import (
    RequestObject as RequestObject,
)
from offpeak.schemas.exxa import (
    StatusObject as StatusObject,
)
from offpeak.schemas.files import (
    ManifestRow as ManifestRow,
)
from offpeak.schemas.files import (
    ResultRow as ResultRow,
)
from offpeak.schemas.files import (
    SegmentRow as SegmentRow,
)
from offpeak.schemas.openai import (
    OPENAI_ENDPOINTS as OPENAI_ENDPOINTS,
)
from offpeak.schemas.openai import (
    BatchInputLine as BatchInputLine,
)
from offpeak.schemas.openai import (
    BatchLineError as BatchLineError,
)
from offpeak.schemas.openai import (
    BatchLineResponse as BatchLineResponse,
)
from offpeak.schemas.openai import (
    BatchOutputLine as BatchOutputLine,
)
from offpeak.schemas.openai import (
    FileDeleted as FileDeleted,
)
from offpeak.schemas.openai import (
    FileList as FileList,
)
from offpeak.schemas.openai import (
    FileObject as FileObject,
)
from offpeak.schemas.openai import (
    InputTokensDetails as InputTokensDetails,
)
from offpeak.schemas.openai import (
    OpenAIBatchCounts as OpenAIBatchCounts,
)
from offpeak.schemas.openai import (
    OpenAIBatchCreate as OpenAIBatchCreate,
)
from offpeak.schemas.openai import (
    OpenAIBatchList as OpenAIBatchList,
)
from offpeak.schemas.openai import (
    OpenAIBatchObject as OpenAIBatchObject,
)
from offpeak.schemas.openai import (
    OpenAIBatchStatus as OpenAIBatchStatus,
)
from offpeak.schemas.openai import (
    OpenAIBatchUsage as OpenAIBatchUsage,
)
from offpeak.schemas.openai import (
    OpenAIErrorBody as OpenAIErrorBody,
)
from offpeak.schemas.openai import (
    OpenAIErrorDetail as OpenAIErrorDetail,
)
from offpeak.schemas.openai import (
    OpenAIMetadata as OpenAIMetadata,
)
from offpeak.schemas.openai import (
    OutputTokensDetails as OutputTokensDetails,
)
from offpeak.schemas.status import (
    ACTIVE_JOB_STATUSES as ACTIVE_JOB_STATUSES,
)
from offpeak.schemas.status import (
    FINAL_STATUSES as FINAL_STATUSES,
)
from offpeak.schemas.status import (
    REQUEST_ERRORS as REQUEST_ERRORS,
)
from offpeak.schemas.status import (
    ErrorCode as ErrorCode,
)
from offpeak.schemas.status import (
    JobStatus as JobStatus,
)
from offpeak.schemas.status import (
    Status as Status,
)
