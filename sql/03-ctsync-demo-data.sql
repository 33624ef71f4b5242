-- ctsync's demo data and modules on the primary (after 01-ctsync-demo-tables.sql).
-- Idempotent: safe to run again.
USE testct;
GO
IF NOT EXISTS (SELECT 1 FROM demo.Customer)
    INSERT INTO demo.Customer (Name, Country, Balance)
    VALUES (N'Acme GmbH', 'DE', 1250.50), (N'Globex', 'US', 0), (N'Initech', 'US', 99.99);
GO
IF NOT EXISTS (SELECT 1 FROM demo.Product)
    INSERT INTO demo.Product (Sku, Title, Description, Price)
    VALUES ('SKU-1', N'Widget', 'A widget', 9.99), ('SKU-2', N'Gadget', NULL, 19.50);
GO
IF NOT EXISTS (SELECT 1 FROM demo.OrderLine)
    INSERT INTO demo.OrderLine (OrderId, Line, Qty, Note)
    VALUES (1, 1, 2.5, N'first'), (1, 2, 1, NULL), (2, 1, 10, N'Zoë 李');
GO
IF NOT EXISTS (SELECT 1 FROM demo.AllTypes)
    INSERT INTO demo.AllTypes (Id, Flag, Tiny, Small, Big, Ratio, Precise, Amount, Price, Cheap,
        Title, Code, Fixed, Blob, Bytes, Uid, Day, At, Stamp, Zoned, Legacy, Minute, Doc, Notes, Picture)
    VALUES (1, 1, 255, -32768, 9223372036854775807, 1.5, -2.25e-300, 1234567890.0123456789,
        922337203685477.5807, -214748.3648, N'Grüße, 世界', 'ABC', N'abcd', 0x00FF, 0x01020304,
        NEWID(), '2026-11-24', '23:59:59.9999999', '2026-11-24 12:34:56.789',
        '2026-11-24 12:34:56.1234567 -05:30', '2026-11-24 23:59:59.997', '2026-11-24 23:59',
        N'<a b="1">ü</a>', N'long legacy text', 0x0102),
        (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
GO
CREATE OR ALTER VIEW demo.ActiveCustomers AS
    SELECT Id, Name, Country FROM demo.Customer WHERE Balance >= 0;
GO
CREATE OR ALTER VIEW demo.GermanCustomers AS
    SELECT Id, Name FROM demo.ActiveCustomers WHERE Country = 'DE';
GO
CREATE OR ALTER FUNCTION demo.WithTax (@price money) RETURNS money AS
BEGIN
    RETURN @price * 1.2;
END;
GO
CREATE OR ALTER FUNCTION demo.LinesOf (@order int) RETURNS TABLE AS
    RETURN SELECT Line, Qty FROM demo.OrderLine WHERE OrderId = @order;
GO
CREATE OR ALTER PROCEDURE demo.CustomerCount AS
    SELECT COUNT(*) AS Customers FROM demo.Customer;
GO
