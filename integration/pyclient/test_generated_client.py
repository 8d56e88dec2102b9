"""A client that another team generates from backupd's proto, in Python.

integration/pyclient_test.go (TestGeneratedPythonClient) generates the
modules from proto/ with grpcio-tools' protoc, starts backupd against moto
with two callers, and runs this file with what it set up in the
environment. Only what a team gets from `python -m grpc_tools.protoc` and
PyPI is used: the generated modules, grpcio and grpcio-status.
"""

import os
import unittest
import uuid

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from backup.v1 import backup_service_pb2 as pb
from backup.v1 import backup_service_pb2_grpc as pb_grpc

ADDR = os.environ["BACKUPD_GRPC"]
TOKEN = os.environ["BACKUPD_TOKEN"]
READER_TOKEN = os.environ["BACKUPD_READER_TOKEN"]
ACCOUNT = os.environ["BACKUPD_ACCOUNT"]
SLOW_ACCOUNT = os.environ["BACKUPD_SLOW_ACCOUNT"]
UNCONFIGURED = os.environ["BACKUPD_UNCONFIGURED_ACCOUNT"]
TABLE = os.environ["BACKUPD_TABLE"]
REGION = "us-east-1"


class Failure:
    """A refused call: its code and the details backupd attached."""

    def __init__(self, err):
        self.code = err.code()
        self.message = err.details()
        self.info = None
        self.bad_request = None
        self.retry = None
        status = rpc_status.from_call(err)
        if status is None:
            return
        for detail in status.details:
            for name, cls in (("info", error_details_pb2.ErrorInfo),
                              ("bad_request", error_details_pb2.BadRequest),
                              ("retry", error_details_pb2.RetryInfo)):
                if detail.Is(cls.DESCRIPTOR):
                    msg = cls()
                    detail.Unpack(msg)
                    setattr(self, name, msg)


class GeneratedClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.channel = grpc.insecure_channel(ADDR)
        cls.stub = pb_grpc.BackupServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()

    def call(self, method, request, token=TOKEN):
        metadata = [("authorization", "Bearer " + token)] if token else []
        return getattr(self.stub, method)(request, metadata=metadata, timeout=30)

    def refused(self, method, request, token=TOKEN):
        with self.assertRaises(grpc.RpcError) as caught:
            self.call(method, request, token)
        failure = Failure(caught.exception)
        self.assertIsNotNone(failure.info, "no google.rpc.ErrorInfo in " + failure.message)
        self.assertEqual(failure.info.domain, "backupd")
        return failure

    def create(self, name, account=ACCOUNT, request_id=""):
        return self.call("CreateBackup", pb.CreateBackupRequest(
            account_id=account, table_name=TABLE, backup_name=name, request_id=request_id))

    def test_create_backup_answers_typed_details(self):
        resp = self.create("py-typed")
        d = resp.backup_details
        self.assertTrue(d.backup_arn.startswith(
            "arn:aws:dynamodb:%s:%s:table/%s/backup/" % (REGION, ACCOUNT, TABLE)), d.backup_arn)
        self.assertEqual(d.backup_name, "py-typed")
        self.assertIn(pb.BackupStatus.Name(d.backup_status),
                      ("BACKUP_STATUS_CREATING", "BACKUP_STATUS_AVAILABLE"))
        self.assertEqual(d.backup_type, pb.BACKUP_TYPE_USER)
        # backup_size_bytes is proto3 optional: a generated client can tell
        # "unknown" from 0.
        self.assertTrue(pb.BackupDetails.DESCRIPTOR.fields_by_name["backup_size_bytes"].has_presence)
        self.assertTrue(d.HasField("backup_creation_date_time"))

        window = resp.consistency
        includes = window.includes_writes_before.ToDatetime()
        excludes = window.excludes_writes_after.ToDatetime()
        self.assertEqual((excludes - includes).total_seconds(), 120)
        created = d.backup_creation_date_time.ToDatetime()
        self.assertTrue(includes < created < excludes, (includes, created, excludes))

    def test_get_list_restore_delete(self):
        arn = self.create("py-round").backup_details.backup_arn

        desc = self.call("GetBackup", pb.GetBackupRequest(backup_arn=arn)).backup_description
        self.assertEqual(desc.backup_details.backup_arn, arn)
        self.assertEqual(desc.source_table_details.table_name, TABLE)
        keys = {(k.attribute_name, pb.KeyType.Name(k.key_type))
                for k in desc.source_table_details.key_schema}
        self.assertEqual(keys, {("pk", "KEY_TYPE_HASH"), ("sk", "KEY_TYPE_RANGE")})

        # moto ignores ListBackups' Limit, so pages here may hold more than
        # page_size; page sizes are proven against the sandbox
        # (TestListBackupsPagesWithoutGapOrRepeat).
        seen, token, pages = [], "", 0
        while True:
            page = self.call("ListBackups", pb.ListBackupsRequest(
                account_id=ACCOUNT, table_name=TABLE, page_size=1, page_token=token))
            pages += 1
            seen += [s.backup_arn for s in page.backup_summaries]
            token = page.next_page_token
            if not token:
                break
            self.assertLess(pages, 100, "paging does not end")
        self.assertIn(arn, seen)
        self.assertEqual(len(seen), len(set(seen)), "a backup listed twice: %s" % seen)

        target = "py-restored-" + uuid.uuid4().hex[:8]
        table = self.call("RestoreTableFromBackup", pb.RestoreTableFromBackupRequest(
            backup_arn=arn, target_table_name=target)).table_description
        self.assertEqual(table.table_name, target)
        self.assertEqual(table.restore_summary.source_backup_arn, arn)
        again = self.refused("RestoreTableFromBackup", pb.RestoreTableFromBackupRequest(
            backup_arn=arn, target_table_name=target))
        self.assertEqual(again.code, grpc.StatusCode.ALREADY_EXISTS)
        self.assertEqual(again.info.reason, "TABLE_ALREADY_EXISTS")

        deleted = self.call("DeleteBackup", pb.DeleteBackupRequest(backup_arn=arn))
        self.assertEqual(deleted.backup_description.backup_details.backup_status,
                         pb.BACKUP_STATUS_DELETED)
        gone = self.refused("GetBackup", pb.GetBackupRequest(backup_arn=arn))
        self.assertEqual(gone.code, grpc.StatusCode.NOT_FOUND)
        self.assertEqual(gone.info.reason, "BACKUP_NOT_FOUND")

    def test_request_id_returns_the_first_result(self):
        request_id = str(uuid.uuid4())
        first = self.create("py-once", request_id=request_id).backup_details.backup_arn
        second = self.create("py-once", request_id=request_id).backup_details.backup_arn
        self.assertEqual(first, second)
        reused = self.refused("CreateBackup", pb.CreateBackupRequest(
            account_id=ACCOUNT, table_name=TABLE, backup_name="py-other", request_id=request_id))
        self.assertEqual(reused.code, grpc.StatusCode.ALREADY_EXISTS)
        self.assertEqual(reused.info.reason, "REQUEST_ID_REUSED")

    def test_field_errors_name_each_field(self):
        bad = self.refused("CreateBackup", pb.CreateBackupRequest(
            account_id="12345", table_name=TABLE, backup_name="ab"))
        self.assertEqual(bad.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(bad.info.reason, "INVALID_ARGUMENT")
        self.assertIsNotNone(bad.bad_request, "no google.rpc.BadRequest")
        violations = {v.field: v.description for v in bad.bad_request.field_violations}
        self.assertEqual(set(violations), {"account_id", "backup_name"})
        self.assertIn("12 digits", violations["account_id"])
        self.assertIn("3-255", violations["backup_name"])

    def test_callers_are_authenticated_and_authorized(self):
        anonymous = self.refused("CreateBackup", pb.CreateBackupRequest(
            account_id=ACCOUNT, table_name=TABLE, backup_name="py-anon"), token=None)
        self.assertEqual(anonymous.code, grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(anonymous.info.reason, "UNAUTHENTICATED")

        reader = self.refused("CreateBackup", pb.CreateBackupRequest(
            account_id=ACCOUNT, table_name=TABLE, backup_name="py-reader"), token=READER_TOKEN)
        self.assertEqual(reader.code, grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(reader.info.reason, "CALLER_NOT_ALLOWED")
        arn = self.create("py-for-reader").backup_details.backup_arn
        listed = self.call("ListBackups", pb.ListBackupsRequest(account_id=ACCOUNT, table_name=TABLE),
                           token=READER_TOKEN)
        self.assertIn(arn, [b.backup_arn for b in listed.backup_summaries])

    def test_unconfigured_account_is_not_found(self):
        missing = self.refused("CreateBackup", pb.CreateBackupRequest(
            account_id=UNCONFIGURED, table_name=TABLE, backup_name="py-nowhere"))
        self.assertEqual(missing.code, grpc.StatusCode.NOT_FOUND)
        self.assertEqual(missing.info.reason, "ACCOUNT_NOT_CONFIGURED")
        self.assertEqual(missing.info.metadata["account_id"], UNCONFIGURED)

    def test_rate_limited_call_says_when_to_come_back(self):
        # SLOW_ACCOUNT allows 0.2 CreateBackup calls per second: one every
        # 5.5 s with the limiter's 100 ms guard per second, far past
        # max_wait, so the second call is refused at once.
        self.create("py-slow-1", account=SLOW_ACCOUNT)
        limited = self.refused("CreateBackup", pb.CreateBackupRequest(
            account_id=SLOW_ACCOUNT, table_name=TABLE, backup_name="py-slow-2"))
        self.assertEqual(limited.code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(limited.info.reason, "RATE_LIMITED")
        self.assertIsNotNone(limited.retry, "no google.rpc.RetryInfo")
        delay = limited.retry.retry_delay.ToTimedelta().total_seconds()
        # The first call's own time (STS, moto) is already off the 5.5 s.
        self.assertTrue(0 < delay <= 5.6, delay)


if __name__ == "__main__":
    unittest.main(verbosity=2)
