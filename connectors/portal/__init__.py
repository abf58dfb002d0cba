"""The national public service portal (Cổng Dịch vụ công quốc gia): its contract as
configuration (:mod:`.contract`), an emulator that serves it (:mod:`.emulator`) and the sink
that delivers every status on ``portal.outbox`` to it (:mod:`.sink`)."""
