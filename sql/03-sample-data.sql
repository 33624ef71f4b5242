-- ctsync: sample data and modules for the primary (run after 01-primary-setup.sql).
USE testct;
GO
IF NOT EXISTS (SELECT 1 FROM dbo.Customer)
    INSERT INTO dbo.Customer (Name, Country, Balance)
    VALUES (N'Acme GmbH', 'DE', 1250.50), (N'Globex', 'US', 0), (N'Initech', 'US', 99.99);
GO
IF NOT EXISTS (SELECT 1 FROM dbo.[User])
    INSERT INTO dbo.[User] (Name, Email)
    VALUES (N'Ann', N'ann@example.com'), (N'Bob', NULL), (N'Zoë', N'zoe@example.com'), (N'李', N'li@example.com');
GO
IF NOT EXISTS (SELECT 1 FROM dbo.Product)
    INSERT INTO dbo.Product (Sku, Title, Description, Price)
    VALUES ('SKU-1', N'Widget', 'A widget', 9.99), ('SKU-2', N'Gadget', NULL, 19.50);
GO
CREATE OR ALTER VIEW dbo.ActiveCustomers AS
    SELECT Id, Name, Country FROM dbo.Customer WHERE Balance >= 0;
GO
CREATE OR ALTER VIEW dbo.GermanCustomers AS
    SELECT Id, Name FROM dbo.ActiveCustomers WHERE Country = 'DE';
GO
CREATE OR ALTER FUNCTION dbo.WithTax (@price money) RETURNS money AS
BEGIN
    RETURN @price * 1.2;
END;
GO
CREATE OR ALTER PROCEDURE dbo.CustomerCount AS
    SELECT COUNT(*) AS Customers FROM dbo.Customer;
GO
