-- Lets an optimistic (version-checked) UPDATE travel in one pipeline with the rest of its
-- transaction and the COMMIT: when the row moved on, this raises serialization_failure, the
-- pipeline aborts, nothing is written, and the caller retries under a row lock.
CREATE FUNCTION triveni_expect_updated(updated bigint, what text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF updated <> 1 THEN
    RAISE EXCEPTION '% was changed concurrently', what USING ERRCODE = 'serialization_failure';
  END IF;
END
$$;
